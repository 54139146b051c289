"""Language-neuron detection: PLND (top-r of every sample) and LAPE (activation-probability entropy).

Both detectors return a :class:`LanguageSets`: one boolean ``[L, W]`` set per
language for the FFN neurons (and, for PLND, the attention dimensions in
query/output space ``W = H * head_dim``). ``shared`` is the intersection over
languages, ``exclusive(L) = set(L) - shared``.

PLND ("The Emergence of Abstract Thought", chenyuxin1999/Abstract_Thought):
per sample and layer take the ``int(r * W)`` highest scores (``r = 0.01`` by
default; the released neuron files use 0.05), then a unit belongs to a language
iff it is in that top set for *every* sample of the language. Two departures
from the released code, both deliberate: the top count uses each kind's own
width (the release computes the FFN count from the attention width and vice
versa), and ties go to the lower index (the release's ``argsort`` leaves them
to quicksort).

LAPE (RUCAIBox/Language-Specific-Neurons ``identify.py``), reproduced step for
step: normalise each neuron's activation probabilities over languages, take
their entropy; the bar is the ``round(0.95 * N)``-th smallest probability over
all ``layers x neurons x languages`` values; neurons with no language above it
are dropped (entropy ``inf``); the ``round(0.01 * L * F)`` lowest-entropy neurons
are kept (ties: lower flat index); each is assigned to every language whose
probability exceeds the bar.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

KINDS = ("ffn", "qk", "vo")


@dataclasses.dataclass(frozen=True)
class LanguageSets:
    """Per-language boolean sets ``[Lang, L, W]`` for each kind a detector produced (``None`` = not detected)."""

    langs: tuple[str, ...]
    ffn: np.ndarray
    qk: np.ndarray | None = None
    vo: np.ndarray | None = None
    method: str = ""

    def __post_init__(self) -> None:
        for kind in KINDS:
            arr = getattr(self, kind)
            if arr is None:
                continue
            if arr.ndim != 3 or arr.shape[0] != len(self.langs) or arr.dtype != bool:
                raise ValueError(
                    f"{kind}: expected a bool [{len(self.langs)} langs, L, W] array, got {arr.dtype} {arr.shape}"
                )

    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if getattr(self, k) is not None)

    def get(self, kind: str = "ffn", lang: str | None = None) -> np.ndarray:
        """The ``[Lang, L, W]`` sets of ``kind``, or ``[L, W]`` for one ``lang``."""
        if kind not in self.kinds():
            raise ValueError(f"kind: expected one of {list(self.kinds())} ({self.method}), got {kind!r}")
        arr = getattr(self, kind)
        if lang is None:
            return arr
        if lang not in self.langs:
            raise ValueError(f"lang: expected one of {list(self.langs)}, got {lang!r}")
        return arr[self.langs.index(lang)]

    def shared(self, kind: str = "ffn") -> np.ndarray:
        """Units in every language's set ``[L, W]``."""
        return np.all(self.get(kind), axis=0)

    def exclusive(self, kind: str = "ffn", lang: str | None = None) -> np.ndarray:
        """``set(L) - shared``: ``[Lang, L, W]``, or ``[L, W]`` for one ``lang``."""
        out = self.get(kind) & ~self.shared(kind)[None]
        return out if lang is None else out[self.langs.index(lang)]

    def save(self, path: str | os.PathLike) -> None:
        """Write the sets to one ``.npz`` (bool arrays, language names, method)."""
        arrays = {k: getattr(self, k) for k in self.kinds()}
        np.savez_compressed(path, langs=np.array(self.langs), method=np.array(self.method), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LanguageSets":
        """Read sets written by :meth:`save`."""
        with np.load(path) as data:
            kinds = {k: data[k].astype(bool) for k in KINDS if k in data.files}
            if "ffn" not in kinds:
                raise ValueError(f"path: {path} holds no 'ffn' sets (not written by LanguageSets.save)")
            return cls(langs=tuple(str(x) for x in data["langs"]), method=str(data["method"]), **kinds)

    def summary(self) -> dict[str, Any]:
        """Per kind: counts per layer (per language, shared, exclusive, union), fractions of the layer width,
        and ``shared_share`` = shared / union of all languages' sets (the seed's shared-neuron ratio)."""
        out: dict[str, Any] = {"method": self.method, "langs": list(self.langs)}
        for kind in self.kinds():
            sets, width = self.get(kind), self.get(kind).shape[-1]
            shared, union = self.shared(kind), np.any(sets, axis=0)
            excl = self.exclusive(kind)
            n_shared, n_union = shared.sum(-1), union.sum(-1)
            out[kind] = {
                "width": int(width),
                "count": {lang: sets[i].sum(-1).tolist() for i, lang in enumerate(self.langs)},
                "shared": n_shared.tolist(),
                "exclusive": {lang: excl[i].sum(-1).tolist() for i, lang in enumerate(self.langs)},
                "union": n_union.tolist(),
                "fraction": {lang: (sets[i].sum(-1) / width).tolist() for i, lang in enumerate(self.langs)},
                "shared_fraction": (n_shared / width).tolist(),
                "shared_share": np.where(n_union > 0, n_shared / np.maximum(n_union, 1), 0.0).tolist(),
                "shared_share_total": float(n_shared.sum() / max(int(n_union.sum()), 1)),
            }
        return out


# --------------------------------------------------------------------------- PLND
def top_count(width: int, ratio: float) -> int:
    """PLND's per-sample top size ``int(ratio * width)``."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio: expected 0 < ratio <= 1, got {ratio}")
    return int(ratio * width)


def plnd_layer(scores: np.ndarray, ratio: float = 0.01) -> np.ndarray:
    """``scores [N samples, W]`` of one layer -> bool ``[W]``: in the top ``int(ratio * W)`` of every sample."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores: expected [N >= 1 samples, W], got shape {scores.shape}")
    n, width = scores.shape
    k = top_count(width, ratio)
    if k == 0:
        return np.zeros(width, bool)
    order = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]
    counts = np.bincount(order.reshape(-1), minlength=width)
    return counts == n


def plnd_sets(
    sample_scores: np.ndarray | Callable[[int], np.ndarray], num_layers: int | None = None, ratio: float = 0.01
) -> np.ndarray:
    """One language's PLND set ``[L, W]`` from per-sample scores ``[N, L, W]`` or a per-layer reader.

    The reader form (``layer -> [N, W]``, e.g. ``lambda l: store.samples("sample_ffn", l)``)
    keeps memory at one layer of samples.
    """
    if callable(sample_scores):
        if num_layers is None:
            raise ValueError("num_layers: required when sample_scores is a per-layer reader")
        return np.stack([plnd_layer(sample_scores(i), ratio) for i in range(num_layers)])
    arr = np.asarray(sample_scores)
    if arr.ndim != 3:
        raise ValueError(f"sample_scores: expected [N samples, L, W], got shape {arr.shape}")
    return np.stack([plnd_layer(arr[:, i], ratio) for i in range(arr.shape[1])])


def plnd_detect(
    per_lang: Mapping[str, Any], ratio: float = 0.01, attn_ratio: float | None = None, kinds: Sequence[str] = KINDS
) -> LanguageSets:
    """PLND sets for every language from its per-sample scores.

    ``per_lang[lang]`` is a :class:`~jaxlab.transforms.neuron_store.NeuronStore`
    (read one layer at a time) or a dict with ``sample_ffn`` / ``sample_qk`` /
    ``sample_vo`` arrays ``[N, L, W]`` (as from ``collect_neuron_stats``).
    ``attn_ratio`` defaults to ``ratio`` (the released runs use one ratio for both).
    """
    if not per_lang:
        raise ValueError("per_lang: expected at least one language, got none")
    unknown = set(kinds) - set(KINDS)
    if unknown or "ffn" not in kinds:
        raise ValueError(f"kinds: expected 'ffn' plus any of {list(KINDS[1:])}, got {list(kinds)}")
    ratios = {
        "ffn": ratio,
        "qk": ratio if attn_ratio is None else attn_ratio,
        "vo": ratio if attn_ratio is None else attn_ratio,
    }
    out: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    for lang, src in per_lang.items():
        for kind in kinds:
            key = f"sample_{kind}"
            if hasattr(src, "samples"):
                if src.num_samples == 0:
                    raise ValueError(f"per_lang[{lang!r}]: the collection at {src.path} has no samples")
                reader = (lambda s, k: lambda layer: s.samples(k, layer))(src, key)
                out[kind].append(plnd_sets(reader, src.meta["num_layers"], ratios[kind]))
            else:
                if key not in src:
                    raise ValueError(f"per_lang[{lang!r}]: expected a {key!r} array, got keys {sorted(src)}")
                out[kind].append(plnd_sets(src[key], ratio=ratios[kind]))
    arrays = {k: np.stack(v) for k, v in out.items()}
    return LanguageSets(langs=tuple(per_lang), method="plnd", **arrays)


# --------------------------------------------------------------------------- LAPE
def _kth_smallest(values: np.ndarray, k: int) -> float:
    """``torch.kthvalue(values, k)`` (1-based) of a flat array."""
    if not 1 <= k <= values.size:
        raise ValueError(f"k: expected 1 <= k <= {values.size} for a kth value, got {k}")
    return float(np.partition(values, k - 1)[k - 1])


def activation_probabilities(per_lang: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{lang: [L, F]}`` activation probabilities from stores (``NeuronStore``) or stats dicts (``act_count``, ``tokens``)."""
    out = {}
    for lang, src in per_lang.items():
        sums = src.sums() if hasattr(src, "sums") else src
        if "act_count" not in sums or "tokens" not in sums:
            raise ValueError(f"per_lang[{lang!r}]: expected 'act_count' and 'tokens', got keys {sorted(sums)}")
        if sums["tokens"] <= 0:
            raise ValueError(f"per_lang[{lang!r}]: no real tokens were counted")
        out[lang] = np.asarray(sums["act_count"], np.float64) / float(sums["tokens"])
    return out


def lape_detect(
    act_prob: np.ndarray | Mapping[str, np.ndarray],
    langs: Sequence[str] | None = None,
    *,
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    bar_ratio: float = 0.95,
) -> LanguageSets:
    """LAPE sets from activation probabilities ``[Lang, L, F]`` (or ``{lang: [L, F]}``), as ``identify.py``."""
    if isinstance(act_prob, Mapping):
        langs = tuple(act_prob)
        act_prob = np.stack([np.asarray(act_prob[k]) for k in langs])
    probs = np.asarray(act_prob, np.float64)
    if probs.ndim != 3:
        raise ValueError(f"act_prob: expected [Lang, L, F], got shape {probs.shape}")
    if langs is None or len(langs) != probs.shape[0]:
        raise ValueError(f"langs: expected {probs.shape[0]} language names, got {langs!r}")
    for name, rate in (("top_rate", top_rate), ("filter_rate", filter_rate), ("bar_ratio", bar_ratio)):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"{name}: expected 0 < {name} <= 1, got {rate}")
    if np.any((probs < 0) | (probs > 1)):
        raise ValueError("act_prob: expected probabilities in [0, 1]")
    p = np.moveaxis(probs, 0, -1)  # [L, F, Lang], the anchor's layout
    num_layers, width, _ = p.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = p / p.sum(-1, keepdims=True)
        normed[np.isnan(normed)] = 0.0
        log = np.where(normed > 0, np.log(np.where(normed > 0, normed, 1.0)), 0.0)
    entropy = -np.sum(normed * log, axis=-1)
    flat = p.reshape(-1)
    top_value = _kth_smallest(flat, round(flat.size * filter_rate))
    entropy[(p > top_value).sum(-1) == 0] = np.inf
    n_keep = round(entropy.size * top_rate)
    order = np.argsort(entropy.reshape(-1), kind="stable")[:n_keep]
    bar = _kth_smallest(flat, round(flat.size * bar_ratio))
    rows, cols = order // width, order % width
    selected = p[rows, cols] > bar  # [n_keep, Lang]
    sets = np.zeros((len(langs), num_layers, width), bool)
    for j in range(len(langs)):
        hit = selected[:, j]
        sets[j, rows[hit], cols[hit]] = True
    return LanguageSets(langs=tuple(langs), ffn=sets, method="lape")


# --------------------------------------------------------------------------- overlap
def jaccard(a: np.ndarray, b: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """``|a & b| / |a | b|`` over ``axis`` (all axes by default); two empty sets count as identical (1.0)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"jaccard: the two sets differ in shape, {a.shape} vs {b.shape}")
    inter, union = np.sum(a & b, axis=axis), np.sum(a | b, axis=axis)
    out = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(out) if np.ndim(out) == 0 else out


def detector_overlap(a: LanguageSets, b: LanguageSets, kind: str = "ffn") -> dict[str, Any]:
    """Jaccard overlap of two detectors' FFN sets: per language (total and per layer) and of the shared sets."""
    common = [lang for lang in a.langs if lang in b.langs]
    if not common:
        raise ValueError(f"detector_overlap: no language in common between {a.langs} and {b.langs}")
    out: dict[str, Any] = {"methods": [a.method, b.method], "per_lang": {}, "per_lang_layer": {}}
    for lang in common:
        x, y = a.get(kind, lang), b.get(kind, lang)
        out["per_lang"][lang] = jaccard(x, y)
        out["per_lang_layer"][lang] = np.asarray(jaccard(x, y, axis=-1)).tolist()
    out["shared"] = jaccard(a.shared(kind), b.shared(kind))
    return out
