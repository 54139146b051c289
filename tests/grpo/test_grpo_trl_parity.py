"""GRPO loss and gradients equal TRL's GRPOTrainer._compute_loss on identical inputs (float32).

A tiny random Llama is loaded into both frameworks (from_hf); the same prompts, completions,
advantages, old and reference log-probs go to TRL's real trainer and to experiments.grpo.loss.
"""

import numpy as np
import pytest
import torch
import transformers

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402  (trl's own dependency)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from experiments.grpo.loss import LossConfig, policy_loss  # noqa: E402
from jaxlab.models import from_hf  # noqa: E402
from jaxlab.models.hf import _hf_names  # noqa: E402

V, B, P, C = 97, 4, 3, 6
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cfg = transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).float()
    folder = tmp_path_factory.mktemp("tiny_llama")
    hf.save_pretrained(folder)  # TRL builds its reference model from this path when beta > 0
    hf.config._name_or_path = str(folder)
    return hf, from_hf(hf)


def _tokenizer():
    import tokenizers

    vocab = {"[PAD]": 0, "a": 1, "b": 2}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[PAD]"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[PAD]")


def _trl_loss_and_grads(hf, inputs, **kw):
    args = trl.GRPOConfig(
        output_dir="/tmp/jaxlab_trl_parity",
        num_generations=2,
        per_device_train_batch_size=B,
        max_completion_length=C,
        report_to=[],
        use_cpu=True,
        bf16=False,
        **kw,
    )
    trainer = trl.GRPOTrainer(
        model=hf,
        reward_funcs=[lambda prompts, completions, **k: [0.0] * len(prompts)],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["a", "b"]}),
        processing_class=_tokenizer(),
    )
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer._compute_loss(trainer.model, {k: torch.tensor(v) for k, v in inputs.items()})
    loss.backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in trainer.model.named_parameters()}
    return float(loss), grads


def _inputs(hf, beta):
    rng = np.random.default_rng(3)
    prompt = rng.integers(1, V, (B, P))
    completion = rng.integers(1, V, (B, C))
    with torch.no_grad():
        ids = torch.tensor(np.concatenate([prompt, completion], 1))
        logp = torch.log_softmax(hf(ids).logits[:, P - 1 : -1] / 0.7, -1)
        cur = torch.gather(logp, -1, torch.tensor(completion)[..., None])[..., 0].numpy()
    # old log-probs off by up to +-0.5 so that ratios land on both sides of both clip edges
    old = (cur + rng.uniform(-0.5, 0.5, cur.shape)).astype(np.float32)
    inputs = dict(
        prompt_ids=prompt,
        prompt_mask=np.ones_like(prompt),
        completion_ids=completion,
        completion_mask=MASK,
        advantages=rng.normal(size=B).astype(np.float32),
        old_per_token_logps=old,
        num_items_in_batch=np.float32(MASK.sum()),
    )
    if beta:
        inputs["ref_per_token_logps"] = (cur + rng.normal(0, 0.3, cur.shape)).astype(np.float32)
    return inputs


CASES = [(lt, beta, False) for lt in ("grpo", "bnpo", "dapo", "dr_grpo") for beta in (0.0, 0.04)]
CASES.append(("dapo", 0.04, True))


@pytest.mark.parametrize("loss_type,beta,kl_ratio", CASES)
def test_loss_and_grads_equal_trl(models, loss_type, beta, kl_ratio):
    hf, jx = models
    inputs = _inputs(hf, beta)
    trl_loss, trl_grads = _trl_loss_and_grads(
        hf,
        inputs,
        loss_type=loss_type,
        beta=beta,
        epsilon=0.2,
        epsilon_high=0.28,
        temperature=0.7,
        use_bias_correction_kl=kl_ratio,
    )
    cfg = LossConfig(
        loss_type=loss_type,
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=beta,
        temperature=0.7,
        kl_ratio_correction=kl_ratio,
        max_completion_length=C,
    )
    batch = {
        "prompt_ids": inputs["prompt_ids"],
        "prompt_mask": inputs["prompt_mask"],
        "completion_ids": inputs["completion_ids"],
        "completion_mask": inputs["completion_mask"],
        "advantages": inputs["advantages"],
        "old_logps": inputs["old_per_token_logps"],
        "num_items": inputs["num_items_in_batch"],
    }
    if beta:
        batch["ref_logps"] = inputs["ref_per_token_logps"]
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    graphdef, params, rest = nnx.split(jx, nnx.Param, ...)
    (loss, stats), grads = jax.value_and_grad(policy_loss, has_aux=True)(params, rest, graphdef, batch, cfg)
    assert float(stats["clip_region"]) > 0  # the inputs really exercise the clip
    np.testing.assert_allclose(float(loss), trl_loss, rtol=1e-5, atol=1e-6)
    names = _hf_names(jx.config)
    checked = 0
    for path, g in grads.flat_state():
        name, transpose = names[path]
        g = np.asarray(g[...])
        np.testing.assert_allclose(g.T if transpose else g, trl_grads[name], rtol=1e-4, atol=1e-5, err_msg=name)
        checked += 1
    assert checked == len(trl_grads)
