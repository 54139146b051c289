"""The forced-call scanner against ``json.loads`` on random calls cut into random fragments."""
import json
import random

from jaxlab.llm.toolstream import ForcedCallStreamer, scan_call


def _random_value(rng, depth=0):
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.randint(-99, 99)
    if kind == 1:
        return "".join(rng.choice('ab "\\}{],:é\n') for _ in range(rng.randrange(6)))
    if kind == 2:
        return rng.choice([True, False, None, 1.5])
    if kind == 3:
        return "x"
    if kind == 4:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(3))}


def test_fragments_concatenate_to_the_arguments_the_model_wrote():
    rng = random.Random(0)
    for trial in range(300):
        name = rng.choice(["weather", 'odd "name"', "t"])
        args = {f"p{i}": _random_value(rng) for i in range(rng.randrange(4))}
        sep = rng.choice([(",", ":"), (", ", ": "), (" ,  ", " :\n")])
        items = [("name", name), ("arguments", args)]
        if trial % 3 == 0:
            items.reverse()  # arguments before the name: held until the name is known
        text = "{" + sep[0].join(f"{json.dumps(k)}{sep[1]}{json.dumps(v, separators=sep, ensure_ascii=trial % 2 == 0)}"
                                 for k, v in items) + "}"
        streamer, deltas, cut = ForcedCallStreamer(call_id="c"), [], 0
        while cut < len(text):
            step = rng.randint(1, 7)
            deltas += streamer.feed(text[cut:cut + step])
            cut += step
        assert deltas[0] == {"index": 0, "id": "c", "type": "function", "function": {"name": name, "arguments": ""}}
        assert all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in deltas[1:])
        raw = "".join(d["function"]["arguments"] for d in deltas)
        assert json.loads(raw) == args, (text, raw)
        got_name, start, end = scan_call(text)
        assert got_name == name and raw == text[start:end]


def test_nothing_is_sent_before_the_name_is_complete():
    s = ForcedCallStreamer(call_id="c")
    assert s.feed('{"name": "wea') == []
    assert s.feed('ther", "arguments": {"ci')[0]["function"]["name"] == "weather"


def test_scalar_and_string_argument_values_end_where_json_says():
    for text, raw in (('{"name": "t", "arguments": 5}', "5"), ('{"arguments": -1.5, "name": "t"}', "-1.5"),
                      ('{"name": "t", "arguments": "a\\"}"}', '"a\\"}"')):
        name, start, end = scan_call(text)
        assert name == "t" and text[start:end] == raw
