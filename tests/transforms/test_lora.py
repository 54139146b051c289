"""LoRA: forward and gradients equal peft's on tiny HF models, merge equals a numpy reference, the base stays frozen."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import jax
import jax.numpy as jnp

from jaxlab.models import from_hf, init_model, tiny_config
from jaxlab.train.optim import OptimConfig
from jaxlab.train.step import model_loss, split_model
from jaxlab.train.trainer import TrainConfig
from jaxlab.train.lora_train import fit_lora
from jaxlab.transforms.lora import (
    LoRAConfig,
    apply_lora,
    find_targets,
    init_lora,
    lora_loss_fn,
    merge_lora,
    merged_model,
    save_peft,
)

peft = pytest.importorskip("peft")

HF = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}


def _hf_model(family: str, seed: int = 0):
    cfg = HF[family](
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def _randomise_b(adapters, seed: int = 1):
    """peft starts B at zero (the adapted model equals the base); random B makes the comparison bite."""
    for i, b in enumerate(adapters.b):
        b.set_value(0.1 * jax.random.normal(jax.random.key(seed * 100 + i), b.shape))


def _adapted_logits(model, adapters, ids):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return apply_lora(nnx.merge(graphdef, params, rest), adapters)(ids)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_forward_and_gradients_equal_peft(family, tmp_path):
    hf = _hf_model(family)
    model = from_hf(hf)
    lcfg = LoRAConfig(rank=4, alpha=12.0, target_modules=("q_proj", "v_proj", "layers.1.mlp.*"))
    adapters = init_lora(model, lcfg)
    _randomise_b(adapters)
    out = save_peft(adapters, model.config, tmp_path / "adapter")
    peft_model = peft.PeftModel.from_pretrained(hf, str(out), is_trainable=True).eval()

    ids = np.random.default_rng(0).integers(0, 97, size=(2, 9))
    weights = np.random.default_rng(1).normal(size=(2, 9, 97)).astype(np.float32)
    ref = peft_model(torch.tensor(ids)).logits
    (ref * torch.tensor(weights)).sum().backward()
    ours = _adapted_logits(model, adapters, jnp.asarray(ids))
    np.testing.assert_allclose(np.asarray(ours), ref.detach().numpy(), atol=2e-4, rtol=2e-4)
    assert np.abs(np.asarray(ours) - np.asarray(model(jnp.asarray(ids)))).max() > 1e-2  # the adapters matter
    np.testing.assert_allclose(
        np.asarray(merged_model(model, adapters)(jnp.asarray(ids))), np.asarray(ours), atol=2e-4, rtol=2e-4
    )

    graphdef, params, rest = nnx.split(adapters, nnx.Param, ...)

    def objective(p):
        return jnp.sum(_adapted_logits(model, nnx.merge(graphdef, p, rest), jnp.asarray(ids)) * weights)

    grads = jax.grad(objective)(params)
    torch_grads = {n: p.grad.numpy() for n, p in peft_model.named_parameters() if p.grad is not None}
    assert len(torch_grads) == 2 * len(adapters.targets)  # only the adapters are trainable in peft too
    hf_names = {t: f"base_model.model.model.{t.replace('attn', 'self_attn')}" for t in adapters.targets}
    for i, target in enumerate(adapters.targets):
        ga = torch_grads[f"{hf_names[target]}.lora_A.default.weight"].T
        gb = torch_grads[f"{hf_names[target]}.lora_B.default.weight"].T
        np.testing.assert_allclose(np.asarray(grads["a"][i][...]), ga, atol=2e-3, rtol=2e-3)
        np.testing.assert_allclose(np.asarray(grads["b"][i][...]), gb, atol=2e-3, rtol=2e-3)


def test_merge_equals_numpy_reference():
    model = init_model(tiny_config("qwen2"), seed=3)
    lcfg = LoRAConfig(rank=3, alpha=5.0, target_modules=("*mlp.up_proj", "o_proj"), use_rslora=True)
    adapters = init_lora(model, lcfg)
    _randomise_b(adapters, seed=2)
    params = nnx.state(model, nnx.Param)
    merged = dict(merge_lora(params, adapters).flat_state())
    pairs = {t: (np.asarray(a), np.asarray(b)) for t, (a, b) in adapters.pairs().items()}
    for path, var in params.flat_state():
        module = ".".join(map(str, path[:-1]))
        want = np.asarray(var[...])
        if path[-1] == "kernel" and module in pairs:
            a, b = pairs[module]
            want = want + lcfg.alpha / np.sqrt(lcfg.rank) * (a @ b)
        np.testing.assert_allclose(np.asarray(merged[path][...]), want, atol=1e-6)
    assert set(pairs) == {f"layers.{i}.{m}" for i in range(2) for m in ("mlp.up_proj", "attn.o_proj")}
    # the base state is not modified in place
    assert np.array_equal(
        np.asarray(nnx.state(model, nnx.Param)["layers"][0]["attn"]["o_proj"]["kernel"][...]),
        np.asarray(params["layers"][0]["attn"]["o_proj"]["kernel"][...]),
    )


def test_dropout_applies_to_the_adapter_input_only_while_training():
    model = init_model(tiny_config("llama"), seed=0)
    lcfg = LoRAConfig(rank=4, alpha=8.0, dropout=0.5, target_modules=("q_proj",))
    adapters = init_lora(model, lcfg)
    _randomise_b(adapters)
    x = jax.random.normal(jax.random.key(5), (2, 3, model.config.hidden_size))
    key = jax.random.key(9)
    layer = nnx.merge(*nnx.split(model))
    base_q = layer.layers[0].attn.q_proj
    kernel = np.asarray(base_q.kernel[...])
    apply_lora(layer, adapters, key)
    a, b = (np.asarray(v) for v in adapters.pairs()["layers.0.attn.q_proj"])
    keep = np.asarray(jax.random.bernoulli(jax.random.fold_in(key, 0), 0.5, x.shape))
    xn = np.asarray(x)
    want = xn @ kernel + lcfg.scale * ((np.where(keep, xn / 0.5, 0.0)) @ a @ b)
    np.testing.assert_allclose(np.asarray(layer.layers[0].attn.q_proj(x)), want, atol=1e-5)
    eval_layer = apply_lora(nnx.merge(*nnx.split(model)), adapters, None).layers[0].attn.q_proj
    np.testing.assert_allclose(np.asarray(eval_layer(x)), xn @ kernel + lcfg.scale * (xn @ a @ b), atol=1e-5)


def test_targets_by_pattern_and_bad_patterns_are_named():
    params = nnx.state(init_model(tiny_config("llama")), nnx.Param)
    assert set(find_targets(params, ["layers.0.*"])) == set(
        f"layers.0.{m}"
        for m in (
            "attn.q_proj",
            "attn.k_proj",
            "attn.v_proj",
            "attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    )
    with pytest.raises(ValueError, match=r"lora.target_modules: 'qkv' matches no Linear.*q_proj"):
        find_targets(params, ["qkv"])
    for bad, field in (
        (dict(rank=0), "lora.rank"),
        (dict(dropout=1.0), "lora.dropout"),
        (dict(alpha=0.0), "lora.alpha"),
        (dict(target_modules=()), "lora.target_modules"),
    ):
        with pytest.raises(ValueError, match=field):
            LoRAConfig(**bad)


def _batches(vocab: int, n: int = 50):
    rng = np.random.default_rng(0)
    for _ in range(n):
        ids = rng.integers(0, vocab, size=(4, 17))
        yield {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((4, 16), np.float32)}


def test_fit_lora_trains_adapters_and_leaves_the_base_unchanged():
    model = init_model(tiny_config("llama"), seed=1)
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    lcfg = LoRAConfig(rank=4, alpha=8.0, dropout=0.1, target_modules=("q_proj", "v_proj", "down_proj"))
    result = fit_lora(
        model,
        lcfg,
        _batches(model.config.vocab_size),
        OptimConfig(learning_rate=1e-2, warmup_steps=0, decay_steps=20),
        TrainConfig(steps=12, progress=False),
    )
    after = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    assert jax.tree.all(jax.tree.map(np.array_equal, before, after))  # base untouched
    losses = [h["loss"] for h in result.history if h["split"] == "train"]
    assert losses[-1] < losses[0]
    assert all(np.abs(np.asarray(b[...])).max() > 0 for b in result.adapters.b)  # B left zero
    merged = dict(result.state.params.flat_state())
    changed = {".".join(map(str, p[:-1])) for p, v in before.flat_state() if not np.array_equal(v[...], merged[p][...])}
    assert changed == set(result.adapters.targets)
    # the base gets exactly zero gradient through the LoRA loss
    graphdef, params, rest = split_model(model)
    ad_graphdef, ad_params, ad_rest = nnx.split(result.adapters, nnx.Param, ...)
    batch = {k: jnp.asarray(v) for k, v in next(_batches(model.config.vocab_size, 1)).items()}
    loss_fn = lora_loss_fn(graphdef, model_loss)
    base_grad = jax.grad(lambda bp: loss_fn(ad_params, (ad_rest, (bp, rest)), ad_graphdef, batch)[0])(params)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(base_grad))
    ad_grad = jax.grad(lambda ap: loss_fn(ap, (ad_rest, (params, rest)), ad_graphdef, batch)[0])(ad_params)
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(ad_grad))
