"""The RL-Text2Vis runner end to end with a tiny random byte-level model: one GRPO step on JSONL tasks,
before/after held-out evaluation, every reward part logged per step and per sample."""

import json

import pytest

from experiments.text2vis import rl_runner
from experiments.text2vis.reward import RewardParts
from experiments.text2vis.rl_eval import summarize, wilson
from experiments.text2vis.tasks import Text2VisTask, task_to_dict
from jaxlab.config import ConfigError, from_dict

GOLD = (
    "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n"
    "plt.bar(df['k'], df['v'])\nplt.title('v by k')\nplt.xlabel('k')\nplt.ylabel('v')\nplt.show()\n"
)


def _tasks(split, n):
    return [
        Text2VisTask(
            id=f"{split}{i}",
            question=f"Which k has the largest v? ({i})",
            answer="b",
            table_csv=f"k,v\na,{i}\nb,{i + 5}\n",
            kind="extremum",
            gold_code=GOLD,
            split=split,
        )
        for i in range(n)
    ]


def _write(path, tasks):
    path.write_text("".join(json.dumps(task_to_dict(t)) + "\n" for t in tasks))
    return str(path)


@pytest.mark.slow
def test_one_step_tiny_model(tmp_path):
    cfg = from_dict(
        rl_runner.Config,
        {
            "output_dir": str(tmp_path / "run"),
            "steps": 1,
            "prompts_per_step": 1,
            "progress": False,
            "model": {"name": "tiny-llama"},
            "data": {
                "source": "jsonl",
                "train_tasks": 2,
                "heldout_tasks": 2,
                "train_path": _write(tmp_path / "train.jsonl", _tasks("train", 2)),
                "heldout_path": _write(tmp_path / "heldout.jsonl", _tasks("heldout", 2)),
            },
            "rollout": {"num_generations": 2, "max_new_tokens": 8, "prompt_bucket": 256},
            "grpo": {"micro_batch": 2},
            "execution": {"timeout_s": 10, "workers": 2},
            "eval": {"max_new_tokens": 8, "batch_size": 2},
            "checkpoint": {"every_steps": 100},
        },
    )
    result = rl_runner.run(cfg)
    for side in ("before", "after"):
        s = result[side]
        assert s["n"] == 2 and 0.0 <= s["exec_rate"] <= 1.0 and len(s["exec_rate_ci95"]) == 2
        assert s["format_rate"] == 0.0  # a random byte model writes no JSON
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("step") == 1]
    keys = set().union(*train)
    for part in ("format", "main", "answer", "shape", "code", "executable", "visual", "readability"):
        assert any(k.endswith(f"rl_text2vis/{part}") for k in keys), part
    samples = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all("part_main" in s and s["task_id"] == "train0" for s in samples)
    for name in ("eval_after.jsonl", "reward_curve.png", "parts_curve.png"):
        assert (tmp_path / "run" / name).exists(), name


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="data.train_path"):
        from_dict(rl_runner.Config, {"data": {"source": "jsonl"}})
    with pytest.raises(ConfigError, match="rewards.name"):
        from_dict(rl_runner.Config, {"rewards": [{"name": "nope"}]})


def test_summary_rates_and_wilson():
    parts = [
        RewardParts(format=1.0, main=1.0, executable=0.5, binary=1.0, code_format="json_string", status="ok"),
        RewardParts(format=0.0, main=0.0, status="no_code"),
    ]
    s = summarize(parts)
    assert (s["format_rate"], s["exec_rate"], s["answer_rate"], s["code_found_rate"]) == (0.5, 0.5, 0.5, 0.5)
    lo, hi = s["exec_rate_ci95"]
    assert lo == pytest.approx(0.0945, abs=1e-3) and hi == pytest.approx(0.9055, abs=1e-3)  # Wilson, n=2, k=1
    # reference: the closed-form Wilson interval
    import math

    k, n, z = 7, 20, 1.959963984540054
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson(k, n) == pytest.approx((c - h, c + h))


def test_prompt_bucket_is_validated():
    from experiments.grpo.rollout import RolloutConfig

    with pytest.raises(ValueError, match="prompt_bucket"):
        RolloutConfig(prompt_bucket=0)
