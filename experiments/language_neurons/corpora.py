"""Which text each stage of a run reads: detection, neuron-specific training, evaluation, MGSM.

``data.dir`` unset (the fresh-clone default): the gettext catalogs, aligned across languages and split
by a fixed hash of each message's English into ``detect`` / ``train`` / ``heldout`` parts, so the same
message is in the same part in every language and training never sees a held-out message.
``data.dir`` set: detection reads that folder (``<lang>.txt`` / ``.jsonl``, or the FLORES devtest
files). ``data.eval_dir`` ``auto`` evaluates on ``../shared/data/flores200_devtest`` when present and
on the catalogs' held-out part otherwise; when detection and evaluation read the same folder, the
evaluation sentences are the ones after those detection used. ``data.train_dir`` names a user corpus
for training (never FLORES or MGSM files: refused). MGSM rows come from ``mgsm.dir``.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Sequence

from experiments.grpo.evaluate import shared_data_dir
from experiments.language_neurons import data

EVAL_ONLY_SUFFIXES = (".devtest", ".tsv")
CATALOG_PARTS = {"detect": 0.3, "train": 0.6, "heldout": 0.1}


@dataclasses.dataclass
class Corpora:
    detect: dict[str, list[str]]
    """Per language, texts in the order detection packs them."""
    train: dict[str, list[str]]
    eval: dict[str, list[str]]
    mgsm: dict[str, list[tuple[str, str]]]
    sources: dict[str, str]
    """What each part was read from, for the results."""


def shared_folder(name: str) -> Path | None:
    """``../shared/data/<name>`` (or under ``$JAXLAB_SHARED_DATA``) when it exists."""
    root = shared_data_dir()
    return root / name if root is not None and (root / name).is_dir() else None


def _catalog_parts(langs: Sequence[str], root: str, min_letters: int) -> dict[str, dict[str, list[str]]]:
    # the English msgids are the alignment and split keys even when English is not studied
    texts = data.catalog_texts(["en", *langs], root, min_letters=min_letters, aligned=True)
    keys = texts["en"]
    parts = data.split_by_hash(keys, keys, CATALOG_PARTS)
    return {part: {lang: [texts[lang][i] for i in idx] for lang in langs} for part, idx in parts.items()}


def _shuffled(texts: list[str], seed: int) -> list[str]:
    out = list(texts)
    random.Random(seed).shuffle(out)
    return out


def _check_trainable(folder: str, langs: Sequence[str]) -> None:
    for lang in langs:
        path = data.folder_file(folder, lang, "data.train_dir")
        if path.suffix in EVAL_ONLY_SUFFIXES:
            raise ValueError(
                f"data.train_dir: {path.name} is an evaluation file (FLORES / MGSM); training on it is "
                "refused: give a folder of <lang>.txt / <lang>.jsonl training text"
            )


def build_corpora(d: Any, m: Any, langs: Sequence[str], detect_used: int) -> Corpora:
    """Resolve every text source of a run (``d``: the data section, ``m``: the MGSM section).

    ``detect_used`` is how many leading detection texts per language the detection samples may consume
    (the evaluation skips them when both read one folder). Errors name the config field.
    """
    sources: dict[str, str] = {}
    catalogs = None

    def cat() -> dict[str, dict[str, list[str]]]:
        nonlocal catalogs
        if catalogs is None:
            catalogs = _catalog_parts(langs, d.catalogs, d.min_letters)
        return catalogs

    if d.dir is None:
        detect = {lang: _shuffled(t, d.seed) for lang, t in cat()["detect"].items()}
        sources["detect"] = f"gettext catalogs under {d.catalogs} (detect part)"
    else:
        detect = {lang: data.folder_texts(d.dir, lang, "data.dir") for lang in langs}
        sources["detect"] = str(Path(d.dir))

    eval_dir = d.eval_dir
    if eval_dir == "auto":
        found = shared_folder("flores200_devtest")
        eval_dir = str(found) if found is not None else "catalogs"
    if eval_dir == "catalogs":
        evaluation = {lang: t[: d.eval_sentences] for lang, t in cat()["heldout"].items()}
        sources["eval"] = f"gettext catalogs under {d.catalogs} (held-out part)"
    else:
        evaluation = {lang: data.folder_texts(eval_dir, lang, "data.eval_dir") for lang in langs}
        if d.dir is not None and Path(d.dir).resolve() == Path(eval_dir).resolve():
            evaluation = {lang: t[detect_used:] for lang, t in evaluation.items()}
        evaluation = {lang: t[: d.eval_sentences] for lang, t in evaluation.items()}
        sources["eval"] = str(Path(eval_dir))
    short = {lang: len(t) for lang, t in evaluation.items() if len(t) < d.eval_sentences}
    if short:
        raise ValueError(
            f"data.eval_sentences: asked for {d.eval_sentences} evaluation sentences per language, "
            f"{sources['eval']} leaves {short} (after the detection texts when both read one folder)"
        )

    if d.train_dir is None:
        train = cat()["train"]
        sources["train"] = f"gettext catalogs under {d.catalogs} (train part)"
    else:
        _check_trainable(d.train_dir, langs)
        train = {lang: data.folder_texts(d.train_dir, lang, "data.train_dir") for lang in langs}
        sources["train"] = str(Path(d.train_dir))

    mgsm: dict[str, list[tuple[str, str]]] = {}
    mgsm_dir = m.dir
    if mgsm_dir == "auto":
        found = shared_folder("mgsm")
        mgsm_dir = str(found) if found is not None else None
    if mgsm_dir is not None and m.rows > 0:
        for lang in (
            m.languages if m.languages is not None else [x for x in langs if data.lang_info(x).mgsm is not None]
        ):
            rows = data.mgsm_rows(mgsm_dir, lang, "mgsm.dir")
            if len(rows) < m.rows:
                raise ValueError(f"mgsm.rows: asked for {m.rows}, {mgsm_dir} has {len(rows)} for {lang!r}")
            mgsm[lang] = rows[: m.rows]
        sources["mgsm"] = mgsm_dir
    else:
        sources["mgsm"] = "off" if m.rows == 0 or m.dir is None else "absent (../shared/data/mgsm not found)"
    return Corpora(detect, train, evaluation, mgsm, sources)
