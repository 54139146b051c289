"""Per-language text for language-neuron detection, training and evaluation, all offline.

Four sources, one code per language (``en``, ``fr``, ``zh``, ...; :data:`LANGS` maps each code to its
names in the other sources):

gettext catalogs (the fresh-clone default)
    ``/usr/share/locale/<lang>/LC_MESSAGES/*.mo``, which Debian-based machines carry as real human
    translations of program messages (~80 catalogs each for fr, de, es, ru, ja, zh_CN). ``msgid`` is
    the English, ``msgstr`` the language's text; entries are aligned across languages by
    ``(catalog, msgctxt, msgid)``. :func:`clean_message` strips printf / brace placeholders, markup and
    mnemonic markers, so what remains is the running text. Read with ``polib``.
a folder of ``<lang>.txt`` / ``<lang>.jsonl``
    any user corpus: one document per non-empty line, or one JSON object per line with a ``text`` field.
FLORES-200 devtest
    a folder of ``<flores name>.devtest`` files (``fra_Latn.devtest``), one sentence per line, line *i*
    the same sentence in every language (``../shared/data/flores200_devtest``; evaluation only).
MGSM
    ``mgsm_<lang>.tsv``: ``question<TAB>numeric answer``, no header (``../shared/data/mgsm``;
    evaluation only: it is never trained on).

Nothing is downloaded: a missing source fails with a message that names the config field to set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Sequence

DEFAULT_LOCALE_ROOT = "/usr/share/locale"


@dataclasses.dataclass(frozen=True)
class Lang:
    """One language's names in each source (``None``: the source does not carry it)."""

    catalog: str | None
    """Directory under the locale root; ``None`` for English (the catalogs' msgids)."""
    flores: str | None
    mgsm: str | None


LANGS: dict[str, Lang] = {
    "en": Lang(None, "eng_Latn", "en"),
    "fr": Lang("fr", "fra_Latn", "fr"),
    "de": Lang("de", "deu_Latn", "de"),
    "es": Lang("es", "spa_Latn", "es"),
    "it": Lang("it", "ita_Latn", None),
    "pt": Lang("pt_BR", "por_Latn", None),
    "ru": Lang("ru", "rus_Cyrl", "ru"),
    "zh": Lang("zh_CN", "zho_Hans", "zh"),
    "ja": Lang("ja", "jpn_Jpan", "ja"),
    "ko": Lang("ko", "kor_Hang", None),
    "th": Lang("th", "tha_Thai", "th"),
    "sw": Lang("sw", "swh_Latn", "sw"),
    "bn": Lang("bn", "ben_Beng", "bn"),
    "te": Lang("te", "tel_Telu", "te"),
    "hi": Lang("hi", "hin_Deva", None),
    "ta": Lang("ta", "tam_Taml", None),
}


def lang_info(code: str, field: str = "languages") -> Lang:
    """The :class:`Lang` of ``code``; an unknown code fails naming ``field`` and the known codes."""
    if code not in LANGS:
        raise ValueError(f"{field}: unknown language {code!r}; expected one of {sorted(LANGS)}")
    return LANGS[code]


# --- cleaning -------------------------------------------------------------------------------------------------

_PRINTF = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|L|q|j|z|t|I)?"
    r"[diouxXeEfFgGaAcspnm]|%<[A-Za-z0-9_]+>|%\([A-Za-z0-9_]+\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]"
)
_DOUBLED = re.compile(r"%%(?:\d+\$)?[sdiu](?![a-z])")  # '%%s': a format string that itself formats
_BRACE = re.compile(r"\$?\{[A-Za-z0-9_.:!\-]*\}")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_MNEMONIC_GROUP = re.compile(r"\s*[(（][_&][A-Za-z0-9][)）]")
_MNEMONIC = re.compile(r"(?<![\w&_])[_&](?=\w)")
_EMPTY_BRACKETS = re.compile(r"[\"'«“„‘‚`»›]\s*[\"'»”“‘’`«‹]|\(\s*\)|\[\s*\]|「\s*」|『\s*』")
_SPACE_BEFORE_STOP = re.compile(r"\s+([.,])(?=\s|$)")


def clean_message(text: str) -> str:
    """A catalog message as plain running text: placeholders, markup and mnemonics removed, spaces collapsed.

    ``%s``, ``%1$d``, ``%(name)s``, ``%<PRIu64>``, ``{0}`` and ``${var}`` go (a message is text around
    its placeholders, not the values); ``<b>``-style tags and ``&amp;``-style entities are undone; GTK
    ``_File`` / Qt ``&File`` mnemonics lose their marker and CJK ``(_F)`` groups go whole; quotes and
    brackets left empty by a removed placeholder go; ``%%s`` (a placeholder in a format string that is
    formatted twice) goes too; any other ``%%`` becomes ``%``.
    """
    text = _DOUBLED.sub("", text).replace("%%", "\0")
    text = _PRINTF.sub("", text)
    text = _BRACE.sub("", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _MNEMONIC_GROUP.sub("", text)
    text = _MNEMONIC.sub("", text)
    text = _EMPTY_BRACKETS.sub("", text).replace("\0", "%")
    return _SPACE_BEFORE_STOP.sub(r"\1", " ".join(text.split()))


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


# --- gettext catalogs -----------------------------------------------------------------------------------------


def catalog_files(lang: str, root: str | Path = DEFAULT_LOCALE_ROOT) -> list[Path]:
    """The ``.mo`` files of ``lang`` (``Lang.catalog`` name) under ``root``, sorted."""
    return sorted((Path(root) / lang / "LC_MESSAGES").glob("*.mo"))


def read_catalog(path: str | Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    """``{(catalog, msgctxt, msgid): (english, translation)}`` of one ``.mo`` file, both cleaned.

    Untranslated entries (empty msgstr) and the header are skipped; plural entries use their singular
    forms (``msgid`` and ``msgstr[0]``).
    """
    import polib

    out: dict[tuple[str, str, str], tuple[str, str]] = {}
    domain = Path(path).stem
    for entry in polib.mofile(str(path)):
        if not entry.msgid:
            continue
        target = entry.msgstr_plural.get(0, "") if entry.msgid_plural else entry.msgstr
        if not target:
            continue
        out[(domain, entry.msgctxt or "", entry.msgid)] = (clean_message(entry.msgid), clean_message(target))
    return out


def catalog_texts(
    langs: Sequence[str],
    root: str | Path = DEFAULT_LOCALE_ROOT,
    *,
    min_letters: int = 12,
    aligned: bool = True,
    field: str = "data.catalogs",
) -> dict[str, list[str]]:
    """Per-language message texts from the gettext catalogs under ``root``, deduplicated.

    English (``en``) is the msgids. A message counts for a language when its cleaned English has at
    least ``min_letters`` letters and its cleaned translation is non-empty and differs from the English
    (a copied msgid is not a translation). ``aligned``: keep only messages every language translates,
    so item *i* is the same message in every list (what parallel detection wants); otherwise each
    language keeps all of its own. Duplicates (same cleaned English) keep their first occurrence in
    sorted catalog order, so the result is deterministic. Raises naming ``field`` when a language has
    no catalogs there.
    """
    langs = list(dict.fromkeys(langs))
    per_lang: dict[str, dict[str, str]] = {}
    for code in langs:
        info = lang_info(code)
        if info.catalog is None:
            continue
        files = catalog_files(info.catalog, root)
        if not files:
            raise FileNotFoundError(
                f"{field}: no gettext catalogs for {code!r} under {str(Path(root) / info.catalog / 'LC_MESSAGES')!r} "
                f"(this machine has no translated .mo files); set data.dir to a folder of <lang>.txt / "
                f"<lang>.jsonl files (or the FLORES-200 devtest folder) instead"
            )
        texts: dict[str, str] = {}
        for path in files:
            for english, target in read_catalog(path).values():
                if _letters(english) >= min_letters and target and target != english:
                    texts.setdefault(english, target)
        per_lang[code] = texts
    if not per_lang:  # English alone: every msgid of the first catalog language present is still English text
        raise ValueError(f"languages: expected at least one language other than English for the catalogs, got {langs}")
    english_keys = [list(t) for t in per_lang.values()]
    if aligned:
        common = set(english_keys[0]).intersection(*english_keys[1:])
        order = [k for k in english_keys[0] if k in common]
        return {code: (order if code == "en" else [per_lang[code][k] for k in order]) for code in langs}
    english = list(dict.fromkeys(k for keys in english_keys for k in keys))
    return {code: (english if code == "en" else list(per_lang[code].values())) for code in langs}


# --- folders, FLORES, MGSM ------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_jsonl(path: Path) -> list[str]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i}: not JSON ({exc})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{i}: expected an object with a string 'text' field")
        if row["text"].strip():
            out.append(row["text"].strip())
    return out


def folder_file(folder: str | Path, code: str, field: str = "data.dir") -> Path:
    """The one file holding ``code``'s text in ``folder``: ``<code>.txt``, ``<code>.jsonl``,
    ``<flores>.devtest`` or ``mgsm_<code>.tsv``; none or several fail naming ``field``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{field}: {str(folder)!r} is not a directory")
    info = lang_info(code)
    names = [f"{code}.txt", f"{code}.jsonl"]
    if info.flores:
        names += [f"{info.flores}.devtest", f"{info.flores}.txt"]
    if info.mgsm:
        names.append(f"mgsm_{info.mgsm}.tsv")
    found = [folder / n for n in names if (folder / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{field}: {str(folder)!r} has no text for {code!r} (looked for {names})")
    if len(found) > 1:
        raise ValueError(
            f"{field}: {str(folder)!r} has several files for {code!r}: {[p.name for p in found]}; keep one"
        )
    return found[0]


def folder_texts(folder: str | Path, code: str, field: str = "data.dir") -> list[str]:
    """``code``'s documents from a folder (see :func:`folder_file`); MGSM files give their questions."""
    path = folder_file(folder, code, field)
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix == ".tsv":
        return [q for q, _ in read_mgsm(path)]
    return _read_lines(path)


def read_mgsm(path: str | Path) -> list[tuple[str, str]]:
    """``[(question, answer)]`` of one MGSM TSV (no header; the answer is a number, kept as its text)."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip():
            raise ValueError(f"{path}:{i}: expected 'question<TAB>answer', got {len(parts)} field(s)")
        answer = parts[1].strip().replace(",", "")
        try:
            float(answer)
        except ValueError:
            raise ValueError(f"{path}:{i}: the answer {parts[1]!r} is not a number") from None
        rows.append((parts[0].strip(), answer))
    return rows


def mgsm_rows(folder: str | Path, code: str, field: str = "data.mgsm_dir") -> list[tuple[str, str]]:
    """MGSM ``[(question, answer)]`` for ``code`` from the folder of ``mgsm_<lang>.tsv`` files."""
    info = lang_info(code)
    if info.mgsm is None:
        raise ValueError(f"{field}: MGSM has no {code!r} (it has {sorted(c for c, i in LANGS.items() if i.mgsm)})")
    path = Path(folder) / f"mgsm_{info.mgsm}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{field}: {str(path)!r} does not exist")
    return read_mgsm(path)


def split_by_hash(texts: Sequence[str], keys: Sequence[str], fractions: dict[str, float]) -> dict[str, list[int]]:
    """Indices of ``texts`` per named part, by a fixed hash of each item's key (the aligned English).

    Aligned lists split with the same keys land the same message in the same part in every language;
    ``fractions`` must sum to 1.
    """
    if len(texts) != len(keys):
        raise ValueError(f"split_by_hash: {len(texts)} texts but {len(keys)} keys")
    if abs(sum(fractions.values()) - 1.0) > 1e-9 or min(fractions.values()) < 0:
        raise ValueError(f"split_by_hash: fractions must be >= 0 and sum to 1, got {fractions}")
    edges, acc = [], 0.0
    for name, frac in fractions.items():
        acc += frac
        edges.append((acc, name))
    parts: dict[str, list[int]] = {name: [] for name in fractions}
    for i, key in enumerate(keys):
        u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
        parts[next((n for e, n in edges if u < e), edges[-1][1])].append(i)
    return parts
