"""experiments/bench/accelerator_suite.py --reduced on the CPU: every section runs or says why not.

So the suite cannot rot between the rare runs on a GPU/TPU: every section must come back ``ok``
on the CPU with its numbers, except the accelerator-only attention kernels, which must be skipped
with a reason. Not a timed test (only positivity and parity are asserted).
"""

import json

import pytest

from experiments.bench import accelerator_suite as suite


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("suite")
    suite.main(["--reduced", "--max_spread", "100", "--output_dir", str(out_dir)])
    return json.loads((out_dir / "accelerator_suite.json").read_text())


def test_every_section_ran(result):
    sections = result["sections"]
    assert set(sections) == {"matmul", "train_smollm2", "train_1b", "attention", "gmm", "gmm_check", "generate"}
    failed = {k: v.get("reason") for k, v in sections.items() if v["status"] != "ok"}
    assert not failed, failed
    assert result["backend"] == "cpu" and result["reduced"] and result["num_devices"] == 8


def test_train_numbers_and_memory(result):
    ceiling = result["sections"]["matmul"]["tflops"]["value"]
    assert ceiling > 0
    for name in ("train_smollm2", "train_1b"):
        t = result["sections"][name]
        assert t["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1, "expert": 1} and t["batch"] == 8
        assert t["tokens_per_s"]["value"] > 0 and t["achieved_tflops"] > 0
        assert t["mfu"] is None  # the CPU has no known peak: MFU is not guessed
        assert t["fraction_of_matmul_ceiling"] > 0 and t["memory"]["peak_bytes"] > 0 and t["compile_s"] > 0


def test_attention_paths_run_or_are_skipped_with_a_reason(result):
    att = result["sections"]["attention"]
    for path in ("xla", "dot_product"):
        assert att[path]["status"] == "ok", att[path]
        assert att[path]["by_seq_len"]["32"]["tflops"]["value"] > 0
    for path, needs in (("cudnn", "GPU"), ("splash", "TPU")):
        assert att[path]["status"] == "skipped"
        assert needs in att[path]["reason"] or "no model.attention" in att[path]["reason"]
    assert att["speedup_at_seq_len"] == 32 and att["speedup_vs_xla"]["dot_product"] > 0


def test_gmm_speed_and_gpu_paths_match_the_reference(result):
    g = result["sections"]["gmm"]
    assert g["impl"] == "reference" and g["gmm"]["tflops"]["value"] > 0 and g["tgmm"]["tflops"]["value"] > 0
    check = result["sections"]["gmm_check"]
    assert check["triton"]["interpret"] and check["all_pass"]
    assert 0 <= check["triton"]["gmm_max_abs_err"] < 1e-3 and check["ragged_dot"]["tgmm_max_abs_err"] < 1e-3
    gen = result["sections"]["generate"]
    assert gen["tokens_per_s"]["value"] > 0 and gen["new_tokens"] == 4


def test_a_failing_section_is_recorded_not_raised():
    def boom():
        raise RuntimeError("kernel rejected the shape")

    out = suite.run_section(boom)
    assert out["status"] == "failed" and "kernel rejected the shape" in out["reason"] and "traceback" in out
    skipped = suite.run_section(lambda: (_ for _ in ()).throw(suite.Skip("no GPU")))
    assert skipped == {"status": "skipped", "reason": "no GPU", "wall_s": skipped["wall_s"]}


def test_unknown_attention_path_is_named():
    with pytest.raises(ValueError, match="--train_attention"):
        suite.train_attention("flash9")
