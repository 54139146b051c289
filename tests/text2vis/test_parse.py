"""The reply parser: the authors' three code formats, the strict format reward, malformed replies."""

import json
import random
import string

import pytest

from experiments.text2vis.parse import CODE_FORMATS, JSON_FORMAT, PARSERS, extract_answer_code, format_ok, parse_output

CODE = "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\nplt.bar(df['a'], df['b'])\nplt.show()"


@pytest.mark.parametrize("parser, fmt", [("released", "json_string"), ("json", JSON_FORMAT)])
def test_json_string_format_is_strict_ok(parser, fmt):
    text = json.dumps({"answer": "42", "code": CODE})
    p = parse_output(text, parser)
    assert (p.answer, p.code, p.code_format, p.format_ok) == ("42", CODE, fmt, True)


@pytest.mark.parametrize("parser", PARSERS)  # not JSON, so the json parser falls back to the regexes
def test_triple_double_quoted_code(parser):
    text = '{"answer": "Paris", "code": """\n' + CODE + '\n"""}'
    p = parse_output(text, parser)
    assert p.code == CODE and p.code_format == "triple_double" and p.answer == "Paris"
    assert not p.format_ok  # not JSON, so the format reward is 0 although the code is extracted


@pytest.mark.parametrize("parser", PARSERS)
def test_triple_single_quoted_code(parser):
    text = '{"answer": "7", "code": \'\'\'' + CODE + "'''}"
    p = parse_output(text, parser)
    assert p.code == CODE and p.code_format == "triple_single" and not p.format_ok


def test_format_order_triple_double_wins_over_json_string():
    text = '"code": "x = 1"\n"code": """y = 2"""'
    assert extract_answer_code(text)[1:] == ("y = 2", "triple_double")


@pytest.mark.parametrize("parser", PARSERS)
def test_prose_and_fences_around_json_extract_but_fail_format(parser):
    inner = json.dumps({"answer": "3", "code": CODE})
    for text in (
        f"```json\n{inner}\n```",
        f"Here you go: {inner}",
        inner + "\nHope this helps",
        f"Sure.\n```\n{inner}\n```\nDone.",
    ):
        p = parse_output(text, parser)
        assert p.answer == "3" and p.code == CODE and not p.format_ok


@pytest.mark.parametrize(
    "obj, why",
    [
        ({"answer": 3, "code": CODE}, "'answer'"),
        ({"answer": "3", "code": ["x"]}, "'code'"),
        ({"answer": "3"}, "'code'"),
        ({"answer": "3", "code": "plt.bar([1], [2])"}, "plt.show()"),
        (["answer", "code"], "list"),
    ],
)
def test_format_reward_failures(obj, why):
    ok, reason = format_ok(json.dumps(obj))
    assert not ok and why in reason


def test_code_may_end_with_show_after_whitespace():
    assert format_ok(json.dumps({"answer": "a", "code": "plt.show()  \n\n"}))[0]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    "text",
    [
        "",
        "no json at all",
        "{",
        '{"answer": ',
        '{"code": "unterminated',
        "null",
        "[]",
        "{" * 5000,
        '{"code": 3, "answer": "x"}',
    ],
)
def test_malformed_replies_never_raise(text, parser):
    p = parse_output(text, parser)
    assert not p.format_ok and p.code is None


def test_released_quirks_answer_with_quote_or_empty_is_none():
    # the answer regex stops at the first double quote, keeping the escape's backslash
    assert parse_output(json.dumps({"answer": 'say "hi"', "code": CODE}), "released").answer == "say \\"
    assert parse_output(json.dumps({"answer": "", "code": CODE}), "released").answer is None
    # unicode_escape reads UTF-8 bytes as Latin-1, as the released code does
    assert (
        parse_output(json.dumps({"answer": "a", "code": "t = 'é'"}, ensure_ascii=False), "released").code == "t = 'Ã©'"
    )
    # a backslash escape that unicode_escape cannot decode keeps the raw text
    assert extract_answer_code('"code": "a\\x"')[1] == "a\\x"


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError, match="text"):
        parse_output(None)


@pytest.mark.parametrize("parser, fmt", [("released", "json_string"), ("json", JSON_FORMAT)])
def test_json_string_code_matches_json_loads_on_random_ascii(parser, fmt):
    """Reference: for ASCII code, the extractor's decode equals json.loads' decode of the same string."""
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + " \n\t'\"\\()[]{}=,.:#"
    for _ in range(300):
        code = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) + "\nplt.show()"
        answer = "".join(rng.choice(string.ascii_letters + " .%") for _ in range(rng.randint(1, 10)))
        text = json.dumps({"answer": answer, "code": code})
        p = parse_output(text, parser)
        assert p.format_ok
        assert p.code == json.loads(text)["code"]
        assert p.answer == answer
        assert p.code_format == fmt


def test_formats_constant():
    assert CODE_FORMATS == ("triple_double", "triple_single", "json_string")


def test_json_parser_reads_what_the_released_regex_cuts():
    """Escaped quotes in the answer, non-ASCII code and raw newlines: the JSON object's own values."""
    listed = json.dumps(["Ford", 'the "big" one'])
    text = json.dumps({"answer": listed, "code": "t = 'é'\nplt.show()"}, ensure_ascii=False)
    p = parse_output(text, "json")
    assert (p.answer, p.code, p.format_ok) == (listed, "t = 'é'\nplt.show()", True)
    assert parse_output(text, "released").answer == "[\\"  # cut at the first quote, as released
    raw = '{"answer": "3", "code": "import x\nplt.show()"}'.replace("\\n", "\n")  # a literal newline
    assert parse_output(raw, "json").code == "import x\nplt.show()"


@pytest.mark.parametrize(
    "value, expected", [(["a", "b"], '["a", "b"]'), (42, "42"), (2.5, "2.5"), ("", None), (None, None)]
)
def test_json_parser_keeps_non_string_answers_as_json_text(value, expected):
    p = parse_output(json.dumps({"answer": value, "code": CODE}), "json")
    assert p.answer == expected and p.code == CODE
    assert p.format_ok == isinstance(value, str)  # the format reward stays strict: answer must be a string


def test_json_parser_skips_objects_without_answer_or_code():
    text = 'Table: {"x": 1}. Reply: {"answer": "7", "code": "plt.show()"}'
    p = parse_output(text, "json")
    assert (p.answer, p.code, p.code_format) == ("7", "plt.show()", JSON_FORMAT)


def test_unknown_parser_is_named():
    with pytest.raises(ValueError, match="parser.*'regex'"):
        parse_output("{}", "regex")
