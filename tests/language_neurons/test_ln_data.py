"""Language-neuron data: gettext catalogs (a tiny .mo written here), folders, FLORES, MGSM, batching."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import polib
import pytest

from experiments.grpo.evaluate import shared_data_dir
from experiments.language_neurons import data, samples


def write_mo(root, lang, domain, entries):
    """``entries``: (msgid, msgstr) or (msgid, msgstr, msgctxt) or (msgid, plural, [forms])."""
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    for e in entries:
        if len(e) == 3 and isinstance(e[2], list):
            po.append(polib.POEntry(msgid=e[0], msgid_plural=e[1], msgstr_plural=dict(enumerate(e[2]))))
        elif len(e) == 3:
            po.append(polib.POEntry(msgid=e[0], msgstr=e[1], msgctxt=e[2]))
        else:
            po.append(polib.POEntry(msgid=e[0], msgstr=e[1]))
    folder = root / lang / "LC_MESSAGES"
    folder.mkdir(parents=True, exist_ok=True)
    po.save_as_mofile(str(folder / f"{domain}.mo"))


@pytest.fixture
def locale(tmp_path):
    root = tmp_path / "locale"
    write_mo(
        root,
        "fr",
        "app",
        [
            ("Cannot open file %s for reading", "Impossible d'ouvrir le fichier %s en lecture"),
            ("_Save the document", "_Enregistrer le document"),
            ("Copied message, untranslated", "Copied message, untranslated"),
            ("Only French translates this one", "Seul le français traduit celui-ci"),
            ("short", "court"),
            (
                "%d file was deleted",
                "%d files were deleted",
                ["%d fichier a été supprimé", "%d fichiers ont été supprimés"],
            ),
            ("Print the document", "Imprimer le document", "menu"),
        ],
    )
    write_mo(root, "fr", "zother", [("Cannot open file %s for reading", "Ouverture du fichier %s impossible")])
    write_mo(
        root,
        "zh_CN",
        "app",
        [
            ("Cannot open file %s for reading", "无法打开文件 %s 进行读取"),
            ("_Save the document", "保存文档(_S)"),
            ("Copied message, untranslated", "已复制的消息"),
            ("%d file was deleted", "%d files were deleted", ["已删除 %d 个文件"]),
            ("Print the document", "打印文档", "menu"),
            ("short", "短"),
        ],
    )
    return root


def test_clean_message_strips_placeholders_markup_and_mnemonics():
    c = data.clean_message
    assert c("Cannot open '%s' now") == "Cannot open now"
    assert c("Datenbankbenutzer »%s« ist nicht") == "Datenbankbenutzer ist nicht"
    assert c("with encoding %s.") == "with encoding."
    assert c("_Open <b>%d</b> files &amp; more") == "Open files & more"
    assert c("ファイル(_F)") == "ファイル"
    assert c("100%% done %1$s {0} ${x} %(name)s %<PRIu64>") == "100% done"
    assert c("Le nom «\xa0%s\xa0» est") == "Le nom est"
    assert c("set G_FILENAME_ENCODING\nnow") == "set G_FILENAME_ENCODING now"
    assert c("%-10.3lf and %*d") == "and"
    assert c("écrasés par\xa0:\n%%s") == "écrasés par :" and c("50%% sure") == "50% sure"


def test_catalog_texts_aligned_by_msgid(locale):
    got = data.catalog_texts(["en", "fr", "zh"], locale, min_letters=12)
    # 'short' is under min_letters; the copied msgid is no French translation; 'Only French' has no zh.
    rows = set(zip(got["en"], got["fr"], got["zh"]))  # item i is the same message in every language
    assert len(got["en"]) == 4 and rows == {
        ("Cannot open file for reading", "Impossible d'ouvrir le fichier en lecture", "无法打开文件 进行读取"),
        ("Save the document", "Enregistrer le document", "保存文档"),
        ("file was deleted", "fichier a été supprimé", "已删除 个文件"),
        ("Print the document", "Imprimer le document", "打印文档"),
    }


def test_catalog_texts_unaligned_keeps_each_language(locale):
    got = data.catalog_texts(["fr", "zh"], locale, aligned=False)
    assert "Seul le français traduit celui-ci" in got["fr"] and len(got["fr"]) == 5
    assert "已复制的消息" in got["zh"] and len(got["zh"]) == 5
    # the duplicate msgid in the second catalog keeps the first (sorted) catalog's translation
    assert "Ouverture du fichier impossible" not in got["fr"]


def test_catalog_texts_missing_language_names_data_dir(locale):
    with pytest.raises(FileNotFoundError, match="data.dir"):
        data.catalog_texts(["en", "de"], locale)
    with pytest.raises(ValueError, match="languages: unknown language 'xx'"):
        data.catalog_texts(["xx"], locale)


def test_folder_texts_all_formats(tmp_path):
    (tmp_path / "fr.txt").write_text("Bonjour le monde\n\n  Deuxième ligne \n", encoding="utf-8")
    (tmp_path / "de.jsonl").write_text(
        json.dumps({"text": "Hallo Welt"}) + "\n\n" + json.dumps({"text": "Zwei"}) + "\n"
    )
    (tmp_path / "spa_Latn.devtest").write_text("Hola\nMundo\n")
    (tmp_path / "mgsm_ru.tsv").write_text("Сколько будет 2+2?\t4\nА 1,000 + 1?\t1,001\n")
    assert data.folder_texts(tmp_path, "fr") == ["Bonjour le monde", "Deuxième ligne"]
    assert data.folder_texts(tmp_path, "de") == ["Hallo Welt", "Zwei"]
    assert data.folder_texts(tmp_path, "es") == ["Hola", "Mundo"]
    assert data.folder_texts(tmp_path, "ru") == ["Сколько будет 2+2?", "А 1,000 + 1?"]
    assert data.mgsm_rows(tmp_path, "ru") == [("Сколько будет 2+2?", "4"), ("А 1,000 + 1?", "1001")]
    with pytest.raises(FileNotFoundError, match="data.dir: .* has no text for 'zh'"):
        data.folder_texts(tmp_path, "zh")
    (tmp_path / "fr.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ValueError, match="several files for 'fr'"):
        data.folder_texts(tmp_path, "fr")
    (tmp_path / "it.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="it.jsonl:1: expected an object with a string 'text'"):
        data.folder_texts(tmp_path, "it")


def test_read_mgsm_rejects_bad_rows(tmp_path):
    (tmp_path / "mgsm_en.tsv").write_text("How many?\tfour\n")
    with pytest.raises(ValueError, match=r"mgsm_en.tsv:1: the answer 'four' is not a number"):
        data.mgsm_rows(tmp_path, "en")
    (tmp_path / "mgsm_en.tsv").write_text("no tab here\n")
    with pytest.raises(ValueError, match="expected 'question<TAB>answer'"):
        data.mgsm_rows(tmp_path, "en")
    with pytest.raises(ValueError, match="data.mgsm_dir: MGSM has no 'it'"):
        data.mgsm_rows(tmp_path, "it")


def test_split_by_hash_matches_reference():
    rng = random.Random(0)
    keys = [f"message {rng.random()}" for _ in range(300)]
    fr = {"a": 0.5, "b": 0.2, "c": 0.3}
    got = data.split_by_hash(keys, keys, fr)
    ref = {"a": [], "b": [], "c": []}
    for i, k in enumerate(keys):
        u = int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) / 2**64
        ref["a" if u < 0.5 else "b" if u < 0.7 else "c"].append(i)
    assert got == ref and all(ref.values())
    with pytest.raises(ValueError, match="sum to 1"):
        data.split_by_hash(keys, keys, {"a": 0.5})


def byte_encode(text):
    return list(text.encode("utf-8"))


def test_packed_samples_against_reference():
    rng = random.Random(1)
    texts = ["".join(rng.choice("abcdé ") for _ in range(rng.randint(1, 30))) for _ in range(60)]
    got = samples.packed_samples(texts, byte_encode, 0, 16, 10, 4, "fr detection")
    rows, cur = [], []
    for t in texts:  # slow reference: one sample per run of texts reaching seq_len + 1 tokens
        cur += byte_encode(t) + [0]
        if len(cur) >= 17:
            rows.append(cur[:17])
            cur = []
    ids = np.concatenate([b["input_ids"] for b in got])
    tgt = np.concatenate([b["targets"] for b in got])
    mask = np.concatenate([b["loss_mask"] for b in got])
    assert ids.shape == (12, 16) and mask[:10].all() and not mask[10:].any()
    np.testing.assert_array_equal(np.concatenate([b["attention_mask"] for b in got]), mask)
    np.testing.assert_array_equal(ids[:10], np.asarray(rows[:10])[:, :-1])
    np.testing.assert_array_equal(tgt[:10], np.asarray(rows[:10])[:, 1:])
    with pytest.raises(ValueError, match="fr detection: 60 texts fill"):
        samples.packed_samples(texts, byte_encode, 0, 16, 1000, 4, "fr detection")


def test_sentence_batches_scores_every_token_once():
    texts = ["ab", "cdef", "", "ghijklmnop"]
    got = samples.sentence_batches(texts, byte_encode, 0, 6, 2, "en eval")
    assert samples.batch_tokens(got) == 2 + 4 + 6
    b = got[0]
    np.testing.assert_array_equal(b["input_ids"][0], [0, 97, 98, 0, 0, 0])
    np.testing.assert_array_equal(b["targets"][0][:2], [97, 98])
    np.testing.assert_array_equal(b["loss_mask"][0], [1, 1, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="en eval: no texts"):
        samples.sentence_batches([], byte_encode, 0, 6, 2, "en eval")


def test_mixed_stream_round_robin_and_deterministic():
    texts = {"en": ["hello world"] * 3, "fr": ["bonjour"] * 2, "zh": ["你好世界"]}
    a = samples.MixedStream(texts, byte_encode, 0, 8, 6, seed=3)
    b = samples.MixedStream(texts, byte_encode, 0, 8, 6, seed=3)
    for _ in range(4):
        x, y = next(a), next(b)
        np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
        assert x["input_ids"].shape == (6, 8) and x["loss_mask"].all()
        np.testing.assert_array_equal(x["input_ids"][:, 1:], x["targets"][:, :-1])
    rows = np.concatenate([next(a)["input_ids"] for _ in range(2)])
    for i, lang in enumerate(["en", "fr", "zh"] * 4):  # row k comes from language k % 3
        allowed = set(byte_encode("".join(texts[lang]))) | {0}
        assert set(rows[i].tolist()) <= allowed, (i, lang)
    with pytest.raises(ValueError, match=r"\['fr'\] has none"):
        samples.MixedStream({"en": ["x"], "fr": []}, byte_encode, 0, 8, 2)


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent")
def test_real_flores_and_mgsm_rows_load_aligned():
    root = shared_data_dir()
    flores = {lang: data.folder_texts(root / "flores200_devtest", lang) for lang in ("en", "fr", "de", "es", "ru")}
    assert {len(v) for v in flores.values()} == {300}
    assert flores["fr"][0].startswith("Le Dr Ehud Ur")
    mgsm = {lang: data.mgsm_rows(root / "mgsm", lang) for lang in ("en", "fr", "zh", "ja", "sw")}
    assert {len(v) for v in mgsm.values()} == {150}
    assert [a for _, a in mgsm["en"]] == [a for _, a in mgsm["zh"]]  # line i is the same problem everywhere
    assert mgsm["zh"][0] == (mgsm["zh"][0][0], "18") and "珍妮特" in mgsm["zh"][0][0]


@pytest.mark.skipif(not data.catalog_files("fr"), reason="this machine has no French gettext catalogs")
def test_real_catalogs_give_aligned_translations():
    got = data.catalog_texts(["en", "fr", "de"])
    assert len(got["en"]) == len(got["fr"]) == len(got["de"]) > 1000
    assert len(set(got["fr"])) > 0.95 * len(got["fr"])  # deduplicated by English, so nearly unique
    # only help texts that document format directives themselves (date's '%C century ...') keep a '%d'
    assert sum("%s" in t or "%d" in t for t in got["fr"]) <= 5
