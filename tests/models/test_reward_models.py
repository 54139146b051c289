"""Reward-model parity with transformers on tiny random checkpoints: the sequence classifier
(transformers' own ``*ForSequenceClassification``) and the Qwen2.5-Math-PRM head (the released
``Qwen2ForProcessRewardModel``: a Qwen2 trunk + Linear-ReLU-Linear, rebuilt here in torch)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from jaxlab.models.hf import UnsupportedModelError
from jaxlab.models.reward import reward_model_from_hf, sequence_scores, step_probabilities

SMALL = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    pad_token_id=0,
)


def _ids(rng, b, s, vocab):
    ids = rng.integers(1, vocab, (b, s))
    mask = np.ones((b, s), np.int64)
    mask[1, s - 3 :] = 0  # right padding on row 1, as transformers' pooling expects
    ids[1, s - 3 :] = 0
    return ids, mask


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_sequence_classifier_scores_equal_transformers(family):
    torch.manual_seed(0)
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[family]
    hf_cfg = cls(**SMALL, num_labels=3)
    ref = transformers.AutoModelForSequenceClassification.from_config(hf_cfg).eval()
    with torch.no_grad():  # the score head starts near zero in transformers; make it count
        ref.score.weight.normal_(0, 1.0)
    ids, mask = _ids(np.random.default_rng(1), 2, 11, SMALL["vocab_size"])
    with torch.no_grad():
        want = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    model = reward_model_from_hf(ref)
    got = sequence_scores(model(jnp.asarray(ids), jnp.asarray(mask)), jnp.asarray(mask))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
    assert np.abs(want).max() > 0.1


class _QwenPRM(torch.nn.Module):
    """The released Qwen2ForProcessRewardModel's layout: ``model`` (Qwen2) + ``score`` (Linear, ReLU, Linear)."""

    def __init__(self, cfg):
        super().__init__()
        self.model = transformers.Qwen2Model(cfg)
        h = cfg.hidden_size
        self.score = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))

    def forward(self, input_ids, attention_mask):
        return self.score(self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)


def test_qwen_prm_step_probabilities_equal_the_released_head():
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(**SMALL)
    ref = _QwenPRM(cfg).eval()
    sep = 5
    ids, mask = _ids(np.random.default_rng(2), 2, 13, SMALL["vocab_size"])
    ids[ids == sep] = 6
    ids[0, [3, 7, 12]] = sep
    ids[1, [4, 9]] = sep
    with torch.no_grad():
        logits = ref(torch.tensor(ids), torch.tensor(mask))
        want = torch.softmax(logits, -1)[..., 1].numpy()
    hf = {**cfg.to_dict(), "architectures": ["Qwen2ForProcessRewardModel"], "num_labels": 2}
    weights = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    model = reward_model_from_hf((hf, weights))
    probs, at_sep = step_probabilities(model(jnp.asarray(ids), jnp.asarray(mask)), jnp.asarray(ids), sep)
    at_sep = np.asarray(at_sep)
    assert at_sep.sum() == 5
    np.testing.assert_allclose(np.asarray(probs)[at_sep], want[at_sep], rtol=1e-4, atol=1e-5)
    assert np.ptp(want[at_sep]) > 1e-3  # the steps get different rewards


def test_a_causal_lm_is_not_a_reward_model():
    hf = {**transformers.LlamaConfig(**SMALL).to_dict(), "architectures": ["LlamaForCausalLM"]}
    with pytest.raises(UnsupportedModelError, match="not a reward model"):
        reward_model_from_hf((hf, {}))


def test_missing_score_tensor_is_named():
    torch.manual_seed(0)
    ref = transformers.AutoModelForSequenceClassification.from_config(
        transformers.LlamaConfig(**SMALL, num_labels=1)
    ).eval()
    hf = {**ref.config.to_dict(), "architectures": ["LlamaForSequenceClassification"]}
    weights = {k: v.detach().numpy() for k, v in ref.state_dict().items() if k != "score.weight"}
    with pytest.raises(UnsupportedModelError, match="score.weight"):
        reward_model_from_hf((hf, weights))
