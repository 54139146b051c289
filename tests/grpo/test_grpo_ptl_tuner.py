"""PTL with GRPO as its tune (``tune.method: rl``): pruned units stay exactly zero and the table reports it."""

import jax
import numpy as np
import pytest
from flax import nnx

from experiments.grpo import ptl_tuner
from experiments.ptl import runner
from jaxlab.config import ConfigError, load

SMALL = {
    "model": {"name": "tiny-llama"},
    "data": {
        "seq_len": 64,
        "batch_size": 2,
        "calib_batches": 1,
        "english_batches": 1,
        "eval_tokens": 256,
        "eval_batch_size": 4,
        "task_items": 2,
        "task_context": 12,
    },
    "schedule": {"stages": 2, "target": 0.5},
    "progress": False,
    "export_hf": False,
    "compile_cache": False,
    "speed": {"enabled": False},
    "baselines": ["one_shot"],
    "tune": {
        "method": "rl",
        "rl_hook": "experiments.grpo.ptl_tuner:factory",
        "steps": 2,
        "learning_rate": 1e-3,
        "rl_options": {
            "prompts_per_step": 2,
            "data": {"train_tasks": 8},
            "rollout": {"num_generations": 4, "max_new_tokens": 6, "temperature": 1.0},
            "grpo": {"micro_batch": 8},
        },
    },
}


def test_ptl_with_grpo_tune_keeps_pruned_units_zero(tmp_path, monkeypatch):
    seen = []
    real_call = ptl_tuner.GRPOTuner.__call__

    def spy(self, model, stage, budget):
        out = real_call(self, model, stage, budget)
        seen.append(
            (
                stage.track,
                stage.index,
                self.position,
                nnx.state(out, nnx.Param),
                stage.masks,
                stage.head_dim,
                len(self.last_history),
            )
        )
        return out

    monkeypatch.setattr(ptl_tuner.GRPOTuner, "__call__", spy)
    learner_masks = []

    class RecordingLearner(ptl_tuner.GRPOLearner):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            learner_masks.append(self.grad_masks)

    monkeypatch.setattr(ptl_tuner, "GRPOLearner", RecordingLearner)
    cfg = load(runner.Config, None, [], data={**SMALL, "output_dir": str(tmp_path / "run")})
    summary = runner.run(cfg)
    assert [(t, i, p, n) for t, i, p, *_, n in seen] == [("ptl", 1, 2, 2), ("ptl", 2, 4, 2), ("one_shot", 1, 4, 4)]
    from jaxlab.transforms import apply_masks

    assert len(learner_masks) == len(seen)
    for (_, _, _, params, masks, head_dim, _), grad_masks in zip(seen, learner_masks):
        masked = apply_masks(params, masks, head_dim)
        for a, b in zip(jax_leaves(params), jax_leaves(masked)):
            np.testing.assert_array_equal(a, b)  # the tuner's output already has every pruned unit at exactly 0
        # a fully pruned neuron already gets zero gradient, so the masks are what guard against stale moments
        # and weight decay: the learner must hold them, zero exactly where the stage prunes
        assert grad_masks is not None
        for g, p in zip(jax_leaves(grad_masks), jax_leaves(params)):
            assert g.shape == p.shape and set(np.unique(g)) <= {0.0, 1.0}
        ones = jax_leaves(apply_masks(jax.tree.map(np.ones_like, params), masks, head_dim))
        assert sum(int((g == 0).sum()) for g in jax_leaves(grad_masks)) == sum(int((o == 0).sum()) for o in ones) > 0
    rows = {(r["track"], r["stage"]) for r in summary["rows"]}
    assert {("ptl", 2), ("one_shot", 1)} <= rows


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_bad_rl_options_are_named(tmp_path):
    data = {**SMALL, "output_dir": str(tmp_path / "bad")}
    data["tune"] = {**SMALL["tune"], "rl_options": {"prompts_per_stepp": 2}}
    cfg = load(runner.Config, None, [], data=data)
    with pytest.raises(ConfigError, match="prompts_per_stepp"):
        ptl_tuner.factory(cfg, encode=lambda s: list(s.encode()), eos=0)
