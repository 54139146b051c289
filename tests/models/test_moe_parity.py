"""MoE models: logits parity with transformers (f32, tiny random configs), export, router losses,
gradients against a dense one-hot reference, and expert parallelism equal to the local path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jaxlab.models import DecoderLM, from_hf, tiny_config, to_hf
from jaxlab.models.config import ModelConfig, MoEConfig
from jaxlab.models.decoder import KVCache
from jaxlab.models.hf import UnsupportedModelError, config_from_hf, config_to_hf, model_from_weights
from jaxlab.models.moe import MoEBlock, clamped_swiglu, load_balancing_loss, router_z_loss
from jaxlab.sharding import MeshConfig, make_mesh

VOCAB = 97
TINY = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=40,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    num_experts_per_tok=2,
)
FAMILIES = {
    "mixtral": (transformers.MixtralConfig, dict(num_local_experts=4)),
    "qwen2_moe": (
        transformers.Qwen2MoeConfig,
        dict(num_experts=4, moe_intermediate_size=16, shared_expert_intermediate_size=24),
    ),
    "qwen3_moe": (transformers.Qwen3MoeConfig, dict(num_experts=4, moe_intermediate_size=16)),
    "gpt_oss": (transformers.GptOssConfig, dict(num_local_experts=4, sliding_window=3)),
}


def _hf_model(family: str, **extra):
    cls, base = FAMILIES[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cls(**{**TINY, **base, **extra}), dtype=torch.float32).eval()
    with torch.no_grad():  # every parameter matters: random norms, biases, sinks; experts big enough to count
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name or "sinks" in name:
                p.add_(0.1 * torch.randn_like(p))
            if "experts" in name and "bias" not in name:
                p.normal_(0.0, 0.3)
    return model


def _weights(hf) -> dict[str, np.ndarray]:
    return {k: v.float().numpy() for k, v in hf.state_dict().items()}


def _ids(batch=2, seq=9, seed=1):
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, seq)).astype(np.int64)


@nnx.jit(static_argnames="return_aux")
def _forward(model, ids, mask=None, return_aux=False):
    """Jitted forward: one compile per tiny model is cheaper than eager op-by-op dispatch."""
    return model(ids, attention_mask=mask, return_aux=return_aux)


def _hf_logits(model, ids, mask=None):
    with torch.no_grad():
        kw = {} if mask is None else {"attention_mask": torch.tensor(mask)}
        return model(torch.tensor(ids), **kw).logits.numpy()


CASES = [
    ("mixtral", {}),
    ("mixtral", {"sliding_window": 4}),
    ("qwen2_moe", {}),
    ("qwen2_moe", {"mlp_only_layers": [1], "norm_topk_prob": True}),
    ("qwen2_moe", {"decoder_sparse_step": 2}),
    ("qwen3_moe", {}),
    ("gpt_oss", {}),
]


@pytest.mark.parametrize(
    "family,extra",
    CASES,
    ids=[
        "mixtral",
        "mixtral-sliding",
        "qwen2_moe",
        "qwen2_moe-mlp-only",
        "qwen2_moe-sparse-step",
        "qwen3_moe",
        "gpt_oss",
    ],
)
def test_logits_match_transformers(family, extra):
    hf = _hf_model(family, **extra)
    model = from_hf(hf)
    ids = _ids()
    np.testing.assert_allclose(np.asarray(_forward(model, ids)), _hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_gpt_oss_config_maps_sinks_yarn_and_alternating_windows():
    cfg = from_hf(_hf_model("gpt_oss")).config
    assert cfg.attention_sinks and cfg.attention_out_bias and cfg.moe.router_bias and cfg.moe.expert_bias
    assert cfg.layer_window == (3, None) and cfg.rope_scaling["rope_type"] == "yarn"
    qwen = config_from_hf(_hf_model("qwen2_moe", decoder_sparse_step=2).config.to_dict())
    assert qwen.layer_is_moe == (False, True) and qwen.moe.shared_expert_gate


@pytest.mark.parametrize("family", list(FAMILIES))
def test_to_hf_round_trip(family, tmp_path):
    hf = _hf_model(family)
    model = from_hf(hf)
    to_hf(model, tmp_path / "out")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    ids = _ids(seed=3)
    ours = np.asarray(_forward(model, ids))
    np.testing.assert_allclose(_hf_logits(reloaded, ids), ours, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(_forward(from_hf(tmp_path / "out"), ids)), ours, atol=1e-6, rtol=0)


def test_per_expert_linear_checkpoints_load():
    """The hub's Mixtral safetensors keep `block_sparse_moe.experts.{j}.w1/w2/w3`; they stack into the same model."""
    hf = _hf_model("mixtral")
    cfg_dict = hf.config.to_dict()
    weights = {k: v.float().numpy() for k, v in hf.state_dict().items()}
    f = TINY["intermediate_size"]
    for i in range(TINY["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        gate_up, down = weights.pop(pre + "mlp.experts.gate_up_proj"), weights.pop(pre + "mlp.experts.down_proj")
        for j in range(4):
            legacy = pre + f"block_sparse_moe.experts.{j}."
            weights[legacy + "w1.weight"], weights[legacy + "w3.weight"] = gate_up[j, :f], gate_up[j, f:]
            weights[legacy + "w2.weight"] = down[j]
        weights[pre + "block_sparse_moe.gate.weight"] = weights.pop(pre + "mlp.gate.weight")
    ids = _ids()
    np.testing.assert_allclose(
        np.asarray(_forward(from_hf((cfg_dict, weights)), ids)), _hf_logits(hf, ids), atol=1e-4, rtol=0
    )


def test_load_balancing_loss_matches_transformers_with_padding():
    hf = _hf_model("mixtral")
    model = from_hf(hf)
    ids = _ids(seq=8)
    mask = np.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad():
        out = hf(torch.tensor(ids), attention_mask=torch.tensor(mask), output_router_logits=True)
    logits, aux = _forward(model, ids, mask, return_aux=True)
    np.testing.assert_allclose(float(aux["load_balancing_loss"]), float(out.aux_loss), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logits)[mask == 1], out.logits.numpy()[mask == 1], atol=1e-4, rtol=0)


def _reference_losses(router_logits, top_k, valid):
    """Hand-computed: pooled over layers and real tokens, per-expert copy fractions x mean probabilities."""
    num_experts = router_logits[0].shape[-1]
    counts, probs_sum, rows, z_sum = np.zeros(num_experts), np.zeros(num_experts), 0.0, 0.0
    for logits in router_logits:
        for t, row in enumerate(np.asarray(logits, np.float64)):
            if not valid[t]:
                continue
            p = np.exp(row - row.max())
            p /= p.sum()
            counts[np.argsort(-p)[:top_k]] += 1
            probs_sum += p
            rows += 1
            z_sum += (row.max() + np.log(np.exp(row - row.max()).sum())) ** 2
    return num_experts * np.sum(counts / rows * probs_sum / rows), z_sum / rows


def test_aux_and_z_loss_against_hand_computed_reference():
    rng = np.random.default_rng(0)
    router_logits = [jnp.asarray(rng.normal(0, 2.0, (12, 6)), jnp.float32) for _ in range(3)]
    valid = rng.random(12) > 0.3
    lb_ref, z_ref = _reference_losses(router_logits, 2, valid)
    np.testing.assert_allclose(float(load_balancing_loss(router_logits, 2, jnp.asarray(valid))), lb_ref, rtol=1e-5)
    np.testing.assert_allclose(float(router_z_loss(router_logits, jnp.asarray(valid))), z_ref, rtol=1e-5)
    hf = _hf_model("qwen3_moe")
    cfg = config_from_hf(hf.config.to_dict())
    cfg = cfg.replace(moe=cfg.moe.replace(router_aux_loss_coef=0.01, router_z_loss_coef=0.001))
    model = model_from_weights(cfg, _weights(hf))
    ids = _ids()
    _, aux = _forward(model, ids, return_aux=True)
    lb_m, z_m = _reference_losses(aux["router_logits"], 2, np.ones(ids.size, bool))
    np.testing.assert_allclose(float(aux["aux_loss"]), 0.01 * lb_m + 0.001 * z_m, rtol=1e-5)


def _dense_moe_reference(params, x, cfg: ModelConfig):
    """Every expert on every token, combined through a dense one-hot [T, E] weight matrix."""
    moe = cfg.moe
    logits = x @ params["router"]["kernel"]
    if moe.router_bias:
        logits = logits + params["router"]["bias"]
    probs = jax.nn.softmax(logits, axis=-1)
    w, ids = jax.lax.top_k(probs, moe.num_experts_per_tok)
    if moe.norm_topk_prob:
        w = w / w.sum(-1, keepdims=True)
    combine = jnp.sum(jax.nn.one_hot(ids, moe.num_experts) * w[..., None], axis=1)
    ex = params["experts"]
    gate = jnp.einsum("td,edf->tef", x, ex["w_gate"])
    up = jnp.einsum("td,edf->tef", x, ex["w_up"])
    if moe.expert_bias:
        gate, up = gate + ex["b_gate"][None], up + ex["b_up"][None]
    act = (
        clamped_swiglu(gate, up, moe.swiglu_alpha, moe.swiglu_limit)
        if moe.activation == "clamped_swiglu"
        else jax.nn.silu(gate) * up
    )
    y_e = jnp.einsum("tef,efd->ted", act, ex["w_down"])
    if moe.expert_bias:
        y_e = y_e + ex["b_down"][None]
    y = jnp.einsum("te,ted->td", combine, y_e)
    if moe.shared_expert_intermediate_size:
        sh = params["shared_expert"]
        s = (jax.nn.silu(x @ sh["gate_proj"]["kernel"]) * (x @ sh["up_proj"]["kernel"])) @ sh["down_proj"]["kernel"]
        y = y + jax.nn.sigmoid(x @ sh["gate"]["kernel"]) * s
    return y


@pytest.mark.parametrize("family", ["qwen2_moe", "gpt_oss"])
def test_moe_block_output_and_gradients_match_dense_one_hot_reference(family):
    cfg = tiny_config(family)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: MoEBlock(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)  # numpy init: eager jax.random per parameter shape costs seconds on CPU
    state = jax.tree.map(lambda p: jnp.asarray(rng.normal(0.0, 0.02, p.shape), p.dtype), state)
    state = jax.tree.map(lambda p: p * 10.0, state)  # weights large enough that routing and clamps matter
    x = jax.random.normal(jax.random.key(1), (24, cfg.hidden_size))
    r = jax.random.normal(jax.random.key(2), (24, cfg.hidden_size))

    def ours(st, x):
        return jnp.sum(nnx.merge(graphdef, st)(x)[0] * r)

    def ref(st, x):
        return jnp.sum(_dense_moe_reference(nnx.to_pure_dict(st), x, cfg) * r)

    (v1, g1), (v2, g2) = (jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(state, x) for f in (ours, ref))
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4 * max(1.0, float(jnp.abs(b).max())))


@pytest.mark.parametrize("mesh_shape", [(1, 8), (2, 4)], ids=["expert8", "data2-expert4"])
@pytest.mark.parametrize(
    "family,experts",
    [("qwen2_moe", {"num_experts": 8}), ("gpt_oss", {"num_local_experts": 8})],
    ids=["qwen2_moe", "gpt_oss"],
)
def test_expert_parallel_forward_equals_local(family, experts, mesh_shape):
    """moe.ep switches the MoE layers to jaxlab.parallel's shard_map paths (gradients: tests/parallel).

    gpt-oss covers per-expert biases and the clamped SwiGLU under both EP modes.
    """
    assert jax.device_count() == 8
    mesh = make_mesh(MeshConfig(data=mesh_shape[0], expert=mesh_shape[1]))
    ids = _ids(batch=2, seq=5)  # 10 tokens: the MoE block pads to a multiple of data x expert (16, not 12)
    hf = _hf_model(family, num_hidden_layers=1, **experts)
    cfg = config_from_hf(hf.config.to_dict())
    results = {}
    for ep in ("none", "standard", "llep"):
        moe = cfg.moe.replace(ep=ep, ep_min_chunk=1, ep_planner="device", ep_alpha=1.0, gmm_impl="reference")
        model = model_from_weights(cfg.replace(moe=moe), _weights(hf))
        with jax.set_mesh(mesh):
            results[ep] = np.asarray(_forward(model, jnp.asarray(ids)))
    np.testing.assert_allclose(results["none"], _hf_logits(hf, ids), atol=1e-4, rtol=0)
    for ep in ("standard", "llep"):
        np.testing.assert_allclose(results[ep], results["none"], atol=1e-5, rtol=0)


def test_kv_cache_decode_matches_full_forward_with_sinks_and_sliding_window():
    model = from_hf(_hf_model("gpt_oss"))
    ids = _ids(batch=2, seq=8)
    full = np.asarray(_forward(model, ids))
    decode = nnx.jit(lambda m, *a: m.decode(*a))
    cache = KVCache.init(model.config, batch=2, length=8)
    logits, cache = decode(model, jnp.asarray(ids[:, :5]), jnp.broadcast_to(jnp.arange(5), (2, 5)), cache)
    steps = [np.asarray(logits)]
    for t in range(5, 8):
        logits, cache = decode(model, jnp.asarray(ids[:, t : t + 1]), jnp.full((2, 1), t), cache)
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)


def test_unsupported_options_are_named():
    base = {**TINY, "model_type": "qwen3_moe", "num_experts": 4, "moe_intermediate_size": 16}
    with pytest.raises(UnsupportedModelError, match="use_sliding_window"):
        config_from_hf({**base, "use_sliding_window": True, "sliding_window": 8})
    with pytest.raises(UnsupportedModelError, match="mlp_only_layers"):
        config_from_hf({**base, "mlp_only_layers": [5]})
    with pytest.raises(UnsupportedModelError, match="quantization_config"):
        config_from_hf(
            {**base, "model_type": "gpt_oss", "num_local_experts": 4, "quantization_config": {"quant_method": "mxfp4"}}
        )
    with pytest.raises(UnsupportedModelError, match="router_jitter_noise"):
        config_from_hf({**base, "model_type": "mixtral", "num_local_experts": 4, "router_jitter_noise": 0.1})
    with pytest.raises(ValueError, match="moe.num_experts_per_tok"):
        MoEConfig(num_experts=4, num_experts_per_tok=8, intermediate_size=16)
    with pytest.raises(ValueError, match="moe.ep_planner"):
        MoEConfig(num_experts=4, num_experts_per_tok=2, intermediate_size=16, ep_planner="cloud")
    with pytest.raises(ValueError, match="moe.ep_alpha"):
        MoEConfig(num_experts=4, num_experts_per_tok=2, intermediate_size=16, ep_alpha=0.5)
    with pytest.raises(ValueError, match="moe.gmm_impl"):
        MoEConfig(num_experts=4, num_experts_per_tok=2, intermediate_size=16, gmm_impl="cublas")
    with pytest.raises(ValueError, match="family 'mixtral'.*moe section"):
        ModelConfig(
            vocab_size=8,
            hidden_size=8,
            intermediate_size=8,
            num_layers=1,
            num_heads=1,
            num_kv_heads=1,
            family="mixtral",
        )
    with pytest.raises(UnsupportedModelError, match="router_z_loss_coef"):
        config_to_hf(tiny_config("mixtral", moe=dict(router_z_loss_coef=0.1)))
    abstract = nnx.eval_shape(lambda: DecoderLM(tiny_config("mixtral", moe=dict(ep="standard")), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="needs a mesh with an 'expert' axis"):
        nnx.eval_shape(lambda m: m(jnp.asarray(_ids())), abstract)


def test_train_loss_includes_router_losses():
    """The trainer's loss for an MoE model is the LM loss plus the weighted router losses."""
    import jax.numpy as jnp
    from flax import nnx

    from jaxlab.models import init_model, tiny_config
    from jaxlab.models.config import MoEConfig
    from jaxlab.train.loss import masked_cross_entropy
    from jaxlab.train.step import _loss_sum

    cfg = tiny_config(
        "qwen3_moe",
        moe=MoEConfig(
            num_experts=4, num_experts_per_tok=2, intermediate_size=32, router_aux_loss_coef=0.5, router_z_loss_coef=0.1
        ),
    )
    model = init_model(cfg, seed=0)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 9)))
    batch = {"input_ids": ids, "targets": jnp.roll(ids, -1, axis=1), "loss_mask": jnp.ones_like(ids)}
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss_sum, n_tok = _loss_sum(params, rest, graphdef, batch)
    logits, aux = model(ids, return_aux=True)
    lm_sum, _ = masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])
    assert float(aux["aux_loss"]) > 0
    np.testing.assert_allclose(float(loss_sum), float(lm_sum + aux["aux_loss"] * n_tok), rtol=1e-6)
