"""The language-neurons runner end to end on a tiny random model with fixture data, and its config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.language_neurons import runner
from experiments.language_neurons.train import changed_entries
from jaxlab.cli import load_run_config, main
from jaxlab.config import ConfigError, from_dict
from tests.language_neurons.test_ln_data import write_mo

WORDS = {
    "en": "the file could not be opened because the disk is full and the user has no rights".split(),
    "fr": "le fichier ne peut pas être ouvert car le disque est plein et l'utilisateur n'a aucun droit".split(),
    "de": "die Datei konnte nicht geöffnet werden weil die Platte voll ist und der Benutzer keine Rechte hat".split(),
}


def sentence(lang: str, i: int) -> str:
    w = WORDS[lang]
    return " ".join(w[(i * 7 + j * 3) % len(w)] for j in range(5 + i % 4)) + f" {i}."


@pytest.fixture
def fixture_data(tmp_path):
    locale = tmp_path / "locale"
    for lang, folder in (("fr", "fr"), ("de", "de")):
        write_mo(locale, folder, "app", [(sentence("en", i), sentence(lang, i)) for i in range(90)])
    evals = tmp_path / "eval"
    evals.mkdir()
    mgsm = tmp_path / "mgsm"
    mgsm.mkdir()
    for lang in WORDS:
        (evals / f"{lang}.txt").write_text("\n".join(sentence(lang, 1000 + i) for i in range(6)) + "\n")
        (mgsm / f"mgsm_{lang}.tsv").write_text("2 plus 3?\t5\n4 plus 4?\t8\n")
    return tmp_path


def tiny_config(root, **over):
    raw = {
        "output_dir": str(root / "run"),
        "model": {"name": "tiny-llama"},
        "languages": ["en", "fr", "de"],
        "data": {
            "catalogs": str(root / "locale"),
            "eval_dir": str(root / "eval"),
            "detect_samples": 3,
            "detect_seq_len": 24,
            "detect_batch_size": 2,
            "eval_sentences": 5,
            "eval_max_len": 40,
            "eval_batch_size": 4,
        },
        "detect": {"plnd_ratio": 0.1, "lape_top_rate": 0.1},
        "deactivate": {"random_exclusive": False},
        "train": {"steps": 2, "batch_size": 3, "seq_len": 16, "learning_rate": 1e-2},
        "mgsm": {
            "dir": str(root / "mgsm"),
            "rows": 2,
            "languages": ["en"],
            "max_new_tokens": 2,
            "batch_size": 2,
            "prompt_width": 128,
        },
        "progress": False,
    }
    for key, value in over.items():
        section, _, field = key.partition(".")
        if field:
            raw[section][field] = value
        else:
            raw[section] = value
    return from_dict(runner.Config, raw)


@pytest.mark.slow
def test_runner_end_to_end_on_tiny_model(fixture_data, tmp_path):
    from jaxlab.models import init_model, to_hf
    from experiments.ptl.runner import model_config, ModelSection

    dev = to_hf(init_model(model_config(ModelSection(name="tiny-llama")), 5), tmp_path / "dev_ckpt")
    cfg = tiny_config(fixture_data, development=[str(dev)])
    summary = runner.run(cfg)
    out = fixture_data / "run"
    for name in (
        "results.json",
        "results.md",
        "neuron_counts.png",
        "deactivation_plnd.png",
        "deactivation_lape.png",
        "run.json",
        "config.yaml",
    ):
        assert (out / name).is_file(), name
    assert (out / "stats" / "main" / "fr" / "cursor.json").is_file()
    res = json.loads((out / "results.json").read_text())
    counts = res["detect"]["counts_ffn"]["plnd"]
    assert len(counts["shared"]) == 4  # tiny-llama: 4 layers
    # shared is the intersection, so never more than any language's set, per layer
    for lang in ("en", "fr", "de"):
        assert all(s <= n for s, n in zip(counts["shared"], counts[lang]))
        assert [n - s for n, s in zip(counts[lang], counts["shared"])] == counts[f"exclusive:{lang}"]
    names = [r["name"] for r in res["deactivation"]["plnd"]]
    assert names == ["shared", "random (shared size)", "exclusive:en", "exclusive:fr", "exclusive:de"]
    shared, rand = res["deactivation"]["plnd"][:2]
    assert shared["neurons"] == rand["neurons"]  # the random control has the shared set's size per kind
    assert set(shared["ppl"]) == {"en", "fr", "de"}
    # every track changed only what its mask allows, and the model did change
    tracks = {t["name"]: t for t in res["training"]}
    assert set(tracks) == {"shared-only", "exclusive-only", "random-only"}
    for t in tracks.values():
        if "note" not in t:
            assert 0 < t["changed_entries"] <= t["trainable_entries"]
            assert set(t["mgsm"]) == {"en"} and t["mgsm"]["en"]["n"] == 2
    assert [r["model"] for r in res["development"]] == ["tiny-llama", str(dev)]
    assert 0.0 <= res["development"][1]["plnd"]["ffn"]["ratio"] <= 1.0
    md = (out / "results.md").read_text()
    assert "## Deactivation (PLND)" in md and "## Neuron-specific training" in md and "Development axis" in md
    assert summary["sources"]["eval"] == str(fixture_data / "eval")

    # another config in the same output_dir is refused before any work
    with pytest.raises(ConfigError, match="different config"):
        runner.run(tiny_config(fixture_data, development=[str(dev)], **{"detect.plnd_ratio": 0.2}))


def test_detection_and_evaluation_share_a_folder_without_overlap(fixture_data, monkeypatch):
    folder = fixture_data / "flores"
    folder.mkdir()
    for lang, name in (("en", "eng_Latn"), ("fr", "fra_Latn"), ("de", "deu_Latn")):
        (folder / f"{name}.devtest").write_text("\n".join(sentence(lang, i) for i in range(40)) + "\n")
    cfg = tiny_config(fixture_data, **{"data.dir": str(folder), "data.eval_dir": str(folder)})
    _, _, prep = runner._prepare(cfg)
    for lang in ("en", "fr", "de"):
        used = set(prep.corpora.detect[lang][: runner._detect_texts_used(cfg, lambda t: list(t.encode()), 0)])
        assert not used & set(prep.corpora.eval[lang])
        assert len(prep.corpora.eval[lang]) == 5
    with pytest.raises(ConfigError, match="data.train_dir: eng_Latn.devtest is an evaluation file"):
        runner._prepare(tiny_config(fixture_data, **{"data.train_dir": str(folder)}))


def test_config_errors_name_the_field(fixture_data, tmp_path):
    with pytest.raises(ConfigError, match="languages: unknown language 'xx'"):
        tiny_config(fixture_data, languages=["en", "xx"])
    with pytest.raises(ConfigError, match="languages: expected at least two"):
        tiny_config(fixture_data, languages=["en"])
    with pytest.raises(ConfigError, match="plnd_ratio: expected a fraction"):
        tiny_config(fixture_data, **{"detect.plnd_ratio": 0.0})
    with pytest.raises(ConfigError, match="detectors: expected a subset"):
        tiny_config(fixture_data, **{"deactivate.detectors": ["plnd", "magic"]})
    with pytest.raises(ConfigError, match="tracks: expected a subset"):
        tiny_config(fixture_data, **{"train.tracks": ["everything"]})
    with pytest.raises(ConfigError, match="mgsm.languages: \\['ja'\\] are not in languages"):
        tiny_config(fixture_data, **{"mgsm.languages": ["ja"]})
    with pytest.raises(ConfigError, match="unknown key 'data.folder'"):
        tiny_config(fixture_data, **{"data.folder": "x"})
    # data problems surface before the model loads, naming the field
    with pytest.raises(ConfigError, match="data.dir"):
        runner._prepare(tiny_config(fixture_data, **{"data.catalogs": str(tmp_path / "no_locale")}))
    with pytest.raises(ConfigError, match=r"data.detect_samples \(en\): 31 texts fill"):
        runner._prepare(tiny_config(fixture_data, **{"data.detect_samples": 500}))
    with pytest.raises(ConfigError, match="data.eval_sentences"):
        runner._prepare(tiny_config(fixture_data, **{"data.eval_sentences": 50}))
    with pytest.raises(ConfigError, match="development: "):
        runner._prepare(tiny_config(fixture_data, development=[str(tmp_path / "nowhere")]))
    with pytest.raises(ConfigError, match="train.seq_len: 4000 exceeds"):
        runner._prepare(tiny_config(fixture_data, **{"train.seq_len": 4000}))


def test_shipped_config_validates_and_cli_reports_config_errors(capsys):
    module, cfg = load_run_config("configs/language_neurons_smollm2.yaml", [])
    assert module is runner and cfg.model.name == "smollm2-135m-instruct"
    assert cfg.detect.plnd_ratio == 0.01 and cfg.deactivate.detectors == ("plnd", "lape")
    assert main(["run", "configs/language_neurons_smollm2.yaml", "languages=[en]"]) == 2
    assert "languages: expected at least two" in capsys.readouterr().err


def test_changed_entries_counts_bit_changes():
    a = {"w": np.zeros((3, 4), np.float32), "b": np.ones(2, np.float32)}
    b = {"w": a["w"].copy(), "b": a["b"].copy()}
    b["w"][1, 2] = 1e-30
    b["b"][0] = -1.0
    assert changed_entries(a, b) == 2
    b["w"][0, 0] = -0.0  # -0.0 == 0.0 but its bits differ
    assert changed_entries(a, b) == 3 and changed_entries(a, a) == 0
