"""experiments/bench/train_throughput.py in its reduced mode (tiny random Llama): outputs and step parity.

Not a timed test: it checks that the bench writes its JSON / table / plot with every field, that
the jaxlab and torch steps compute the same first loss (same weights, same batch), and that each
remat policy was compiled and measured. It asserts nothing about speed.
"""

import json

import pytest

from experiments.bench import train_throughput


def test_reduced_bench_writes_every_field_and_both_steps_agree(tmp_path):
    train_throughput.main(
        [
            "--model",
            "tiny",
            "--batch",
            "2",
            "--seq_len",
            "16",
            "--remat",
            "none,full,dots_saveable",
            "--time_remat",
            "none,full",
            "--max_spread",
            "10",
            "--output_dir",
            str(tmp_path),
        ]
    )
    out = json.loads((tmp_path / "train_throughput.json").read_text())
    assert (tmp_path / "train_throughput.png").stat().st_size > 1000
    assert "| jaxlab | full |" in (tmp_path / "train_throughput.md").read_text()
    assert out["tokens_per_step"] == 32 and out["flops_per_token"] > 0
    assert [r["remat"] for r in out["jaxlab"]] == ["none", "full", "dots_saveable"]
    compiled_only = out["jaxlab"].pop()  # compiled from abstract shapes: memory and compile time, no timing
    assert "tokens_per_s" not in compiled_only and compiled_only["memory"]["peak_bytes"] > 0
    assert "| jaxlab | dots_saveable | not timed |" in (tmp_path / "train_throughput.md").read_text()
    assert out["process_max_rss_mib"] > 0
    for row in out["jaxlab"]:
        assert row["compile_s"] > 0 and row["memory"]["peak_bytes"] > row["memory"]["argument_bytes"] > 0
        assert row["tokens_per_s"]["value"] > 0 and row["ratio_vs_torch"] > 0
        # the same update on the same weights and batch: the losses before the first update agree
        assert row["first_loss_minus_torch"] == pytest.approx(0.0, abs=1e-4)
        assert len(out["samples_s"][f"jaxlab/{row['remat']}"]) == out["repeats"] == 5
    assert out["torch"]["tokens_per_s"]["value"] > 0 and out["torch"]["first_loss"] > 4.0  # ~ln(256) at init
    assert out["load_before"] and out["load_after"]


def test_time_remat_must_be_compiled_too(tmp_path):
    with pytest.raises(SystemExit):
        train_throughput.main(
            ["--model", "tiny", "--remat", "none", "--time_remat", "full", "--output_dir", str(tmp_path)]
        )
