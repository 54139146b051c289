"""The PTL runner on a tiny random model: schedule checks, the loop, resume, the RL hook, outputs."""

import json

import numpy as np
import pytest
import ptl_hooks

from experiments.ptl import runner
from experiments.ptl.schedule import ScheduleConfig, plan
from jaxlab.config import ConfigError, load
from jaxlab.models import tiny_config

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
}


def _cfg(tmp_path, name, overrides=(), **extra):
    data = {**SMALL, "output_dir": str(tmp_path / name), **extra}
    return load(runner.Config, None, list(overrides), data=data)


def test_schedule_plans_linear_and_geometric():
    cfg = tiny_config("llama", intermediate_size=100)
    assert plan(ScheduleConfig(target=0.5, stages=5), cfg) == [90, 80, 70, 60, 50]
    geo = plan(ScheduleConfig(target=0.5, stages=2, spacing="geometric"), cfg)
    assert geo == [71, 50]  # equal keep ratio 1/sqrt(2) per stage
    layers = plan(
        ScheduleConfig(unit="layers", target=0.5, stages=1, criterion="block_influence"),
        tiny_config("llama", num_layers=4),
    )
    assert layers == [2]
    by_params = plan(ScheduleConfig(target=0.2, target_of="params", stages=1), cfg)
    assert 0 < by_params[0] < 100


@pytest.mark.parametrize(
    "override,match",
    [
        ("schedule.target=1.5", r"schedule: target: expected a fraction in \(0, 1\)"),
        ("schedule.criterion=foo", r"criterion: 'foo' is unknown for unit 'mlp'"),
        ("schedule.target=0.999", r"schedule.target: .* leaves 0 of 96 MLP neurons per layer; expected at least one"),
        ("schedule.stages=200", r"schedule.stages: 200 linear stages remove"),
        ("tune.rl_hook=nowhere:factory", r"tune.rl_hook|rl_hook"),
    ],
)
def test_bad_schedule_fails_before_work(tmp_path, override, match):
    extra = ["tune.method=rl"] if "rl_hook" in override else []
    with pytest.raises(ConfigError, match=match):
        runner.run(_cfg(tmp_path, "bad", [override, *extra]))
    assert not (tmp_path / "bad").exists()  # nothing was written, nothing loaded


def test_cpt_run_with_baselines_writes_everything(tmp_path):
    cfg = _cfg(tmp_path, "run", ["tune.steps=1", "tune.learning_rate=0.002", "export_hf=true"])
    summary = runner.run(cfg)
    rows = {(r["track"], r["stage"]): r for r in summary["rows"]}
    assert set(rows) == {("base", 0), ("ptl", 1), ("ptl", 2), ("one_shot", 1), ("no_tune", 1), ("random", 1)}
    assert rows["ptl", 2]["tokens"] == rows["one_shot", 1]["tokens"] == rows["random", 1]["tokens"] == 2 * 2 * 64
    assert rows["no_tune", 1]["tokens"] == 0
    assert rows["ptl", 2]["params"] == rows["one_shot", 1]["params"] < rows["base", 0]["params"]
    for r in summary["rows"]:
        assert np.isfinite(r["code_ppl"]) and np.isfinite(r["text_ppl"]) and 0 <= r["accuracy"] <= 1
    out = tmp_path / "run"
    assert (out / "ptl_vs_oneshot.png").stat().st_size > 10_000
    assert json.loads((out / "results.json").read_text())["rows"][0]["track"] == "base"
    hf = json.loads((out / "hf_model" / "config.json").read_text())
    assert hf["intermediate_size"] == 48 and hf["num_hidden_layers"] == 4


def test_resume_from_mid_loop_checkpoint_and_rl_hook(tmp_path):
    hook = ["tune.method=rl", "tune.rl_hook=ptl_hooks:factory", "baselines=[]"]
    ptl_hooks.CALLS.clear()
    full = runner.run(_cfg(tmp_path, "full", hook))
    assert ptl_hooks.CALLS == [("ptl", 1, 4), ("ptl", 2, 4)]

    ptl_hooks.CALLS.clear()
    ptl_hooks.FAIL_AT["stage"] = ("ptl", 2)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            runner.run(_cfg(tmp_path, "crash", hook))
    finally:
        ptl_hooks.FAIL_AT["stage"] = None
    ptl_hooks.CALLS.clear()
    resumed = runner.run(_cfg(tmp_path, "crash", hook))
    assert resumed["resumed_from"] == 1
    assert ptl_hooks.CALLS == [("ptl", 2, 4)]  # stage 1 was not redone
    for a, b in zip(full["rows"], resumed["rows"]):
        for key in ("params", "code_ppl", "text_ppl", "accuracy", "tokens"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key


def test_hook_cannot_revive_pruned_units(tmp_path):
    from experiments.ptl.loop import run_track
    from experiments.ptl.tune import Budget
    from jaxlab.models import init_model
    from jaxlab.train.step import split_model
    from jaxlab.transforms import full_masks

    cfg = runner.model_config(runner.ModelSection(name="tiny-qwen2"))
    model = init_model(cfg, 0)
    rng = np.random.default_rng(0)
    calib = [
        {
            "input_ids": rng.integers(0, 256, (2, 8)).astype(np.int32),
            "targets": rng.integers(0, 256, (2, 8)).astype(np.int32),
            "loss_mask": np.ones((2, 8), np.int32),
        }
    ]
    result = run_track(
        "ptl",
        model,
        full_masks(cfg),
        [80],
        ScheduleConfig(criterion="magnitude", stages=1),
        tuner=ptl_hooks.factory(None),
        budget=Budget(1, 16, 1e-3),
        calib=calib,
        english=calib,
        eval_fn=lambda split: {"code_ppl": 1.0, "text_ppl": 1.0, "accuracy": 0.0},
        ckpt_dir=tmp_path / "ck",
        progress=False,
        log=lambda s: None,
    )
    _, params, _ = split_model(result.model)
    for i in range(cfg.num_layers):
        keep = np.asarray(result.masks.mlp[i]) > 0
        down = np.asarray(params["layers"][i]["mlp"]["down_proj"]["kernel"][...])
        assert keep.sum() == 80 and np.all(down[~keep] == 0) and np.all(down[keep] != 0)


def test_layer_track_bypasses_then_compacts(tmp_path):
    import jax.numpy as jnp

    from experiments.ptl.loop import run_track
    from experiments.ptl.tune import Budget
    from jaxlab.models import init_model
    from jaxlab.transforms import compact, full_masks

    cfg = runner.model_config(runner.ModelSection(name="tiny-qwen3"))
    model = init_model(cfg, 1)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 256, (2, 9)).astype(np.int32)
    calib = [{"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((2, 8), np.int32)}]
    result = run_track(
        "ptl",
        model,
        full_masks(cfg),
        [3, 2],
        ScheduleConfig(unit="layers", target=0.5, stages=2, criterion="skip_loss"),
        tuner=None,
        budget=Budget(0, 0, 1e-3),
        calib=calib,
        english=calib,
        eval_fn=lambda split: {"code_ppl": 1.0, "text_ppl": 1.0, "accuracy": 0.0},
        ckpt_dir=tmp_path / "ck",
        progress=False,
        log=lambda s: None,
    )
    assert [r["kept"] for r in result.rows] == [3, 2] and int(np.sum(result.masks.layers)) == 2
    small = compact(result.model, result.masks)
    assert small.config.num_layers == 2
    x = jnp.asarray(ids)
    np.testing.assert_allclose(np.asarray(small(x)), np.asarray(result.model(x)), rtol=1e-5, atol=1e-6)


def test_fresh_calibration_per_stage_and_final_only_eval(tmp_path):
    from experiments.ptl.loop import run_track
    from experiments.ptl.tune import Budget
    from jaxlab.models import init_model
    from jaxlab.transforms import full_masks

    cfg = runner.model_config(runner.ModelSection(name="tiny-llama"))
    model = init_model(cfg, 2)
    rng = np.random.default_rng(2)

    def batch():
        return [
            {
                "input_ids": rng.integers(0, 256, (2, 8)).astype(np.int32),
                "targets": rng.integers(0, 256, (2, 8)).astype(np.int32),
                "loss_mask": np.ones((2, 8), np.int32),
            }
        ]

    draws, evals = [], []

    def calib(stage):
        draws.append(stage)
        return batch(), batch()

    def eval_fn(split):
        evals.append(1)
        return {"code_ppl": 1.0, "text_ppl": 1.0, "accuracy": 0.0}

    result = run_track(
        "ptl",
        model,
        full_masks(cfg),
        [80, 64, 48],
        ScheduleConfig(stages=3, target=0.5),
        tuner=None,
        budget=Budget(0, 0, 1e-3),
        calib=calib,
        english=None,
        eval_fn=eval_fn,
        ckpt_dir=tmp_path / "ck",
        progress=False,
        eval_final_only=True,
        log=lambda s: None,
    )
    assert draws == [1, 2, 3] and len(evals) == 1
    assert [("code_ppl" in r) for r in result.rows] == [False, False, True]
    with pytest.raises(ValueError, match="seed_exact: layer 0 has"):
        run_track(
            "x",
            init_model(cfg, 2),
            full_masks(cfg),
            [4],
            ScheduleConfig(stages=1, target=0.5, ptl_select="seed_exact", top_frac=0.05),
            tuner=None,
            budget=Budget(0, 0, 1e-3),
            calib=calib,
            english=None,
            eval_fn=eval_fn,
            ckpt_dir=tmp_path / "ck2",
            progress=False,
            log=lambda s: None,
        )


def test_ptl_select_validation():
    assert ScheduleConfig(ptl_select="seed_exact").ptl_select == "seed_exact"
    with pytest.raises(ValueError, match="ptl_select: 'seed_exact' is a selection of the 'ptl' criterion"):
        ScheduleConfig(criterion="magnitude", ptl_select="seed_exact")
    with pytest.raises(ValueError, match="ptl_select: expected 'ranked' or 'seed_exact'"):
        ScheduleConfig(ptl_select="bogus")


def test_seed_exact_run_end_to_end(tmp_path):
    summary = runner.run(
        _cfg(
            tmp_path,
            "exact",
            [
                "schedule.ptl_select=seed_exact",
                "schedule.top_frac=0.7",
                "schedule.target=0.25",
                "tune.steps=1",
                "baselines=[random]",
            ],
        )
    )
    rows = {(r["track"], r["stage"]): r for r in summary["rows"]}
    assert rows["ptl", 2]["params"] == rows["random", 1]["params"] < rows["base", 0]["params"]
    assert {c["vs"] for c in summary["comparisons"]} == {"base", "random"}
