"""PTL evaluation data and statistics: clean held-out code, windows, calibration samples, bootstrap intervals,
GSM8K grading, comparisons, and every shipped PTL config's data built before any model loads."""

from pathlib import Path

import numpy as np
import pytest

from experiments.ptl import corpora, evaluate, generation, report, runner
from jaxlab.config import ConfigError, load
from jaxlab.train import data as train_data

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("ptl_*.yaml"))
BYTES, EOS = corpora.byte_encoder()


def test_name_family_and_codec_tables():
    assert corpora.name_family("encodings/cp850.py") == corpora.name_family("encodings/cp858.py") == "encodings/cp"
    assert corpora.name_family("lib2to3/fixes/fix_dict.py") == "lib2to3/fixes/fix"
    assert corpora.name_family("importlib/_bootstrap_external.py") == "importlib/bootstrap"
    assert corpora.name_family("json/decoder.py") != corpora.name_family("json/encoder.py")
    cp858 = (train_data.stdlib_root() / "encodings" / "cp858.py").read_text()
    assert corpora.is_codec_table(cp858)
    assert corpora.is_codec_table("x = [\n" + "    0x0041,  0x0042,\n" * 20 + "]\n")
    assert not corpora.is_codec_table((train_data.stdlib_root() / "functools.py").read_text())
    assert corpora.is_codec_table("import codecs\ndecoding_table = (\n    'a'\n    'b'\n)\n")


def test_shingle_containment():
    a = "\n".join(f"line_{i} = {i}" for i in range(20))
    ref = corpora._shingles(a)
    assert corpora.shingle_containment(a, ref) == 1.0
    b = "\n".join(f"other_{i} = {i}" for i in range(20))
    assert corpora.shingle_containment(b, ref) == 0.0
    half = "\n".join([f"line_{i} = {i}" for i in range(10)] + [f"other_{i} = {i}" for i in range(10)])
    assert 0.3 < corpora.shingle_containment(half, ref) < 0.6
    assert corpora.shingle_containment("", ref) == 0.0


def test_code_split_is_clean():
    split = corpora.code_splits(None, 0.05)
    root = train_data.stdlib_root()
    rel = lambda f: f.relative_to(root).as_posix()  # noqa: E731
    train_fams = {corpora.name_family(rel(f)) for f in split.train}
    assert not {corpora.name_family(rel(f)) for f in split.heldout} & train_fams
    assert corpora.ENGLISH_MODULE not in {rel(f) for f in split.train + split.heldout}
    ref = set()
    for f in split.train:
        ref |= corpora._shingles(f.read_text(encoding="utf-8", errors="replace"))
    for f in split.heldout:
        text = f.read_text(encoding="utf-8", errors="replace")
        assert not corpora.is_codec_table(text), rel(f)
        assert corpora.shingle_containment(text, ref) <= 0.2, rel(f)
    assert sum(len(f.read_text(encoding="utf-8", errors="replace")) for f in split.heldout) > 200_000
    strict = corpora.code_splits(None, 0.05, max_overlap=0.0)
    assert len(strict.heldout) < len(split.heldout) and set(strict.heldout) <= set(split.heldout)


def test_eval_windows_pad_the_last_batch_and_fail_when_short():
    docs = [list(range(1, 40)), list(range(50, 90))]
    batches = corpora.eval_windows(iter(docs), EOS, 10, 5, 2, "toy")
    assert [b["input_ids"].shape for b in batches] == [(2, 10)] * 3
    assert batches[-1]["loss_mask"].sum() == 10 and batches[-1]["loss_mask"][1].sum() == 0
    np.testing.assert_array_equal(batches[0]["targets"][0], np.arange(2, 12))
    with pytest.raises(ValueError, match=r"the toy corpus has 81 tokens, fewer than the 110 .*eval_tokens"):
        corpora.eval_windows(iter(docs), EOS, 10, 10, 2, "toy")


def test_calibration_samples_are_whole_documents():
    text = "import os\n\n\ndef f(x):\n    return x\n\n\n@dec\nclass C:\n    pass\n"
    assert corpora.code_units(text) == ["import os", "def f(x):\n    return x", "@dec\nclass C:\n    pass"]
    assert corpora.paragraphs("a b\n\n  \nc d\ne") == ["a b", "c d\ne"]
    docs = [f"document number {i} " * (1 + i % 3) for i in range(30)]
    batches = corpora.sample_batches(docs, BYTES, 255, 64, 2, 3, "toy", seed=0)
    assert len(batches) == 2 and batches[0]["input_ids"].shape == (3, 64)
    for b in batches:
        for ids, tg, m in zip(b["input_ids"], b["targets"], b["loss_mask"]):
            n = int(m.sum())
            text = bytes(ids[:n].tolist()).decode()
            assert text in docs and len(text) == n  # the row is one whole document, last counted token its end
            assert tg[n - 1] == 255 and np.all(ids[n:] == 0) and np.array_equal(tg[: n - 1], ids[1:n])
    again = corpora.sample_batches(docs, BYTES, 255, 64, 2, 3, "toy", seed=0)
    other = corpora.sample_batches(docs, BYTES, EOS, 64, 2, 3, "toy", seed=1)
    assert np.array_equal(again[0]["input_ids"], batches[0]["input_ids"])
    assert not np.array_equal(other[0]["input_ids"], batches[0]["input_ids"])
    with pytest.raises(ValueError, match="toy corpus has .* fewer than the 40 calibration samples"):
        corpora.sample_batches(docs, BYTES, EOS, 64, 4, 10, "toy", seed=0)


def _tiny_split(seed=0):
    from jaxlab.models import init_model
    from jaxlab.train.step import split_model

    return split_model(init_model(runner.model_config(runner.ModelSection(name="tiny-llama")), seed))


def test_window_nll_progress_bar_only_when_asked(capsys):
    """``progress=false`` in a runner reaches the per-batch evaluation bars (they printed regardless before)."""
    split = _tiny_split()
    docs = [np.random.default_rng(0).integers(1, 256, 200).tolist()]
    batches = corpora.eval_windows(iter(docs), EOS, 32, 4, 2, "toy")
    evaluate.window_nll(split, batches, desc="quiet bars", progress=False)
    assert "quiet bars" not in capsys.readouterr().err
    evaluate.window_nll(split, batches, desc="loud bars", progress=True)
    assert "loud bars" in capsys.readouterr().err


def test_window_nll_matches_trainer_perplexity():
    from jaxlab.train.step import evaluate as trainer_eval

    split = _tiny_split()
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 256, 300).tolist()]
    batches = corpora.eval_windows(iter(docs), EOS, 32, 7, 4, "toy")
    nll, tok = evaluate.window_nll(split, batches)
    assert nll.shape == tok.shape == (7,) and np.all(tok == 32)
    full = corpora.eval_windows(iter(docs), EOS, 32, 8, 4, "toy")
    nll8, _ = evaluate.window_nll(split, full)
    np.testing.assert_allclose(nll8[:7], nll, rtol=1e-5)
    ppl = evaluate.bootstrap_ppl(nll8, np.full(8, 32.0))["ppl"]
    assert ppl == pytest.approx(trainer_eval(split, full)["perplexity"], rel=1e-4)


def test_bootstrap_intervals():
    rng = np.random.default_rng(0)
    tok = np.full(400, 100.0)
    nll = tok * rng.normal(2.0, 0.3, 400)
    b = evaluate.bootstrap_ppl(nll, tok)
    lo, hi = b["ci"]
    assert lo < b["ppl"] < hi and b["windows"] == 400 and b["tokens"] == 40_000
    small = evaluate.bootstrap_ppl(nll[:25], tok[:25])
    assert small["ci"][1] - small["ci"][0] > hi - lo  # fewer windows, wider interval
    same = evaluate.paired_ratio(nll, nll, tok)
    assert same["ratio"] == 1.0 and same["ci"] == (1.0, 1.0) and not same["significant"]
    worse = evaluate.paired_ratio(nll + tok * 0.05, nll, tok)
    assert worse["ratio"] == pytest.approx(np.exp(0.05)) and worse["significant"] and worse["ci"][0] > 1
    noisy = evaluate.paired_ratio(nll + tok * rng.normal(0, 0.5, 400), nll, tok)
    assert not noisy["significant"]
    with pytest.raises(ValueError, match="equal, non-empty"):
        evaluate.paired_ratio(nll, nll[:3], tok)
    m = evaluate.bootstrap_mean([1, 0, 1, 1])
    assert m["mean"] == 0.75 and 0 <= m["ci"][0] < 0.75 < m["ci"][1] <= 1
    assert evaluate.bootstrap_mean([])["n"] == 0
    d = evaluate.paired_difference([1] * 50, [0] * 50)
    assert d["diff"] == 1.0 and d["significant"]
    assert not evaluate.paired_difference([1, 0] * 10, [0, 1] * 10)["significant"]


def test_choice_correct_and_evaluate_stage():
    split = _tiny_split()
    items = [corpora.Choice([1, 2, 3], [[4, 5], [6, 7], [8, 9], [10, 11]]) for _ in range(3)]
    c = evaluate.choice_correct(split, items)
    assert c.shape == (3,) and set(c) <= {0.0, 1.0}
    assert evaluate.choice_accuracy(split, items) == pytest.approx(c.mean())
    docs = [list(range(1, 200))]
    code = corpora.eval_windows(iter(docs), EOS, 16, 5, 4, "code")
    gen = lambda s: {"name": "gsm8k", "correct": [1.0, 0.0]}  # noqa: E731
    out = evaluate.evaluate_stage(split, code, code, items, generation=gen)
    assert out["code_ppl"] == pytest.approx(out["text_ppl"])
    assert out["code_ppl_ci"][0] <= out["code_ppl"] <= out["code_ppl_ci"][1] and out["code_tokens"] == 80
    assert out["gsm8k"] == 0.5 and out["gsm8k_n"] == 2 and out["per_item"]["gsm8k"] == [1.0, 0.0]
    assert len(out["per_window"]["code"][0]) == 5


def test_gsm8k_grading_and_absent_data(monkeypatch):
    assert generation.grade("so the answer is \\boxed{72}", "72") == 1.0
    assert generation.grade("she has 5 apples, then 3 = 8", "8") == 1.0
    assert generation.grade("the answer is 9", "8") == 0.0
    assert generation.grade("no number here", "8") == 0.0
    monkeypatch.setattr(generation, "shared_data_dir", lambda: None)
    assert generation.gsm8k_tasks(10) == []


@pytest.mark.skipif(generation.shared_data_dir() is None, reason="../shared/data is absent")
def test_gsm8k_real_rows_and_prompt_width():
    tasks = generation.gsm8k_tasks(5)
    assert len(tasks) == 5 and all(t.answer and t.question for t in tasks)
    with pytest.raises(ValueError, match="gsm8k_rows: asked for 100000 rows"):
        generation.gsm8k_tasks(100_000)
    with pytest.raises(ValueError, match="gsm8k_prompt_width: the longest GSM8K prompt has"):
        generation.encode_prompts(tasks, None, BYTES, 32)


def test_gsm8k_metric_scores_generations(monkeypatch):
    from experiments.grpo.tasks import Task
    import jaxlab.generate

    tasks = [Task(f"What is {i} + 1?", str(i + 1), "gsm8k", "eval") for i in range(5)]
    prompts = generation.encode_prompts(tasks, None, BYTES, 128)
    split = _tiny_split()
    real = generation.gsm8k_metric(tasks, prompts, None, max_new_tokens=4, batch_size=2, prompt_width=128)(split)
    assert real["name"] == "gsm8k" and len(real["correct"]) == 5

    seen = []

    def fake(model, tok, batch, **kw):
        seen.append((len(batch), kw["pad_to_multiple"]))
        answers = [bytes(p).decode().split(" + ")[0].split()[-1] for p in batch]
        return jaxlab.generate.GenerationOutput(
            [list(f"#### {int(a) + 1}".encode()) for a in answers], [""] * len(batch), ["stop"] * len(batch)
        )

    monkeypatch.setattr(jaxlab.generate, "generate", fake)
    out = generation.gsm8k_metric(tasks, prompts, None, max_new_tokens=4, batch_size=2, prompt_width=128)(split)
    assert out["correct"] == [1.0] * 5 and seen == [(2, 128)] * 3  # the last batch is filled, not scored


def _rows():
    rng = np.random.default_rng(1)
    tok = [100.0] * 50
    base = (rng.normal(2, 0.2, 50) * 100).tolist()
    mk = lambda track, shift, items: {  # noqa: E731
        "track": track,
        "stage": 1,
        "params": 1e6,
        "tokens": 0,
        "code_ppl": 1.0,
        "text_ppl": 1.0,
        "accuracy": 0.5,
        "code_ppl_ci": [0.9, 1.1],
        "per_window": {"code": [[b + shift for b in base], tok], "text": [base, tok]},
        "per_item": {"task": items},
    }
    return [
        mk("base", 0.0, [1] * 20),
        {"track": "ptl", "stage": 1, "params": 1e6, "tokens": 0},
        mk("ptl", 10.0, [1] * 20),
        mk("one_shot", 0.0, [0] * 20),
    ]


def test_compare_and_tables():
    comps = report.compare(_rows())
    by = {(c["vs"], c["metric"]): c for c in comps}
    assert (
        by["one_shot", "code_ppl"]["value"] == pytest.approx(np.exp(0.1)) and by["one_shot", "code_ppl"]["significant"]
    )
    assert by["one_shot", "text_ppl"]["value"] == pytest.approx(1.0) and not by["one_shot", "text_ppl"]["significant"]
    assert by["one_shot", "task"]["value"] == 1.0 and by["base", "task"]["value"] == 0.0
    text = report.format_comparisons(comps)
    assert "vs one_shot" in text and "significant" in text and "n.s." in text
    assert report.compare(_rows()[:1]) == []
    table = report.format_table(_rows())
    assert "1.000 [0.900, 1.100]" in table and "gsm8k" not in table.splitlines()[0]
    assert table.splitlines()[3].split()[3] == "-"  # the unevaluated intermediate row


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_ptl_config_builds_its_data(path):
    from jaxlab.cli import load_run_config

    _, cfg = load_run_config(str(path), [])
    tok, encode, eos = runner.load_encoder(cfg.model)
    data = runner.build_data(cfg, encode, eos, cfg.schedule.stages, tok)
    d = cfg.data
    for batches in (data.code_eval, data.text_eval):
        assert sum(int(b["loss_mask"].sum()) for b in batches) == d.eval_windows * d.seq_len >= 50_000
    assert len(data.items) == d.task_items
    assert len(data.gsm8k) == (d.gsm8k_rows if generation.shared_data_dir() else 0)
    one, two = data.calibration(cfg, encode, eos, 1), data.calibration(cfg, encode, eos, 2)
    assert one[0][0]["input_ids"].shape == (d.batch_size, d.seq_len)
    assert not np.array_equal(one[0][0]["input_ids"], two[0][0]["input_ids"])  # fresh per stage


def test_data_errors_fire_before_the_model_loads(tmp_path, monkeypatch):
    def no_model(section):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(runner, "load_model", no_model)
    base = {
        "model": {"name": "tiny-llama"},
        "output_dir": str(tmp_path / "out"),
        "progress": False,
        "compile_cache": False,
        "data": {"seq_len": 64, "batch_size": 2, "eval_tokens": 10_000_000},
    }
    with pytest.raises(ConfigError, match="held-out code corpus has .* lower data.eval_tokens"):
        runner.run(load(runner.Config, None, [], data=base))
    with pytest.raises(ConfigError, match="calibration samples asked for"):
        runner.run(load(runner.Config, None, ["data.eval_tokens=256", "data.calib_batches=100000"], data=base))
    assert not (tmp_path / "out").exists()
    cfg = load(runner.Config, None, ["data.eval_tokens=256", "data.fresh_calib=false"], data=base)
    data = runner.build_data(cfg, BYTES, EOS, 3)
    a, b = data.calibration(cfg, BYTES, EOS, 1), data.calibration(cfg, BYTES, EOS, 3)
    assert np.array_equal(a[0][0]["input_ids"], b[0][0]["input_ids"])
