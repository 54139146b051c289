"""``jaxlab serve`` features beyond plain text: logprobs, JSON-schema constrained decoding, continuous batching.

References are slower independent paths: greedy tokens from ``generate`` scored by one
full-sequence forward without a KV cache for logprobs, ``jaxlab.generate.generate`` (one jitted while-loop) for the text of
requests that joined a running batch, numpy bit unpacking for the grammar mask.
"""

import json
import threading
import time

import jax
import jax.numpy as jnp
import jsonschema
import numpy as np
import pytest

from jaxlab.generate import generate, unpack_bitmask
from jaxlab.llm.chat_format import render_prompt
from jaxlab.llm import ChatRequest
from jaxlab.llm.engine import Job
from jaxlab.llm.http import OpenAIHTTPClient
from jaxlab.llm.grammar import allowed_ids

HI = [{"role": "user", "content": "hi"}]
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["city", "sunny", "tags"],
    "properties": {
        "city": {"enum": ["Paris", "Rome", "Oslo"]},
        "sunny": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["warm", "wet"]}, "maxItems": 2},
    },
}
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}


def test_bitmask_unpacking_matches_numpy():
    rng = np.random.default_rng(0)
    words = rng.integers(-(2**31), 2**31, size=(3, 7), dtype=np.int64).astype(np.int32)
    vocab = 7 * 32 - 5
    got = np.asarray(unpack_bitmask(jnp.asarray(words), vocab))
    for row in range(3):
        assert np.array_equal(np.nonzero(got[row])[0], allowed_ids(words[row], vocab))


def test_logprobs_match_a_cacheless_forward(served):
    _, client, engine = served
    r = client.chat.completions.create(
        model="tiny", messages=HI, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens == 5
    ids = engine.encode(render_prompt(engine.tokenizer, HI))
    greedy = generate(engine.model, engine.tokenizer, [ids], max_new_tokens=5).token_ids[0]
    logps = np.asarray(jax.nn.log_softmax(engine.model(jnp.asarray([ids + greedy]))[0], axis=-1))  # no cache
    for k, e in enumerate(entries):
        logp, tok = logps[len(ids) - 1 + k], greedy[k]
        assert e.token == engine.tokenizer.decode([tok]) and e.logprob == pytest.approx(logp[tok], abs=1e-4)
        top = np.argsort(-logp)[:3]
        assert [a.token for a in e.top_logprobs] == [engine.tokenizer.decode([int(t)]) for t in top]
        assert [a.logprob for a in e.top_logprobs] == pytest.approx(logp[top].tolist(), abs=1e-4)
    assert "".join(e.token for e in entries) == r.choices[0].message.content
    streamed = [
        e
        for c in client.chat.completions.create(
            model="tiny", messages=HI, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3, stream=True
        )
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in entries]
    c = client.completions.create(
        model="tiny", prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2
    )
    lp = c.choices[0].logprobs
    assert "".join(lp.tokens) == c.choices[0].text and len(lp.token_logprobs) == 4
    assert all(len(alts) == 2 and max(alts.values()) >= v - 1e-6 for alts, v in zip(lp.top_logprobs, lp.token_logprobs))
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(4)]
    plain = client.chat.completions.create(model="tiny", messages=HI, max_tokens=2)
    assert plain.choices[0].logprobs is None


def test_json_schema_output_is_valid_json_by_constrained_decoding(served):
    _, client, _ = served
    ask = dict(model="tiny", messages=[{"role": "user", "content": "weather?"}], max_tokens=60, temperature=1.0, seed=3)
    free = client.chat.completions.create(**ask).choices[0].message.content
    with pytest.raises(json.JSONDecodeError):  # the random model does not write JSON on its own
        json.loads(free)
    r = client.chat.completions.create(**ask, n=2, response_format=JSON_FORMAT)
    for choice in r.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
    chunks = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(**ask, response_format=JSON_FORMAT, stream=True)
        if c.choices
    ]
    jsonschema.validate(json.loads("".join(chunks)), SCHEMA)


@pytest.mark.parametrize(
    "rf, text",
    [
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}, "schema"),
        ({"type": "xml"}, "response_format"),
    ],
)
def test_bad_response_formats_are_400s(served, rf, text):
    import openai

    _, client, _ = served
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=4, response_format=rf)
    assert text in str(err.value)


def _collect(engine, prompt: str, max_tokens: int):
    events, done = [], threading.Event()

    def emit(ev):
        events.append((time.perf_counter(), ev))
        if ev[0] in ("finish", "error"):
            done.set()

    engine.submit(Job(prompt_ids=engine.encode(prompt), max_tokens=max_tokens, emit=emit))
    return events, done


def _text(events) -> str:
    assert events[-1][1][0] == "finish", events[-1]
    return "".join(ev[2] for _, ev in events if ev[0] == "delta")


def test_a_request_joins_a_running_batch_and_nobody_changes(served):
    _, _, engine = served
    prompts = {"long": ("Tell me a long story about the sea", 150), "short": ("hi", 3), "late": ("count to ten", 8)}
    before = engine.admitted_mid_batch
    runs = {k: _collect(engine, *prompts[k]) for k in ("long", "short")}  # one batch of 2 rows
    steps = engine.decode_steps
    while engine.decode_steps < steps + 10:
        time.sleep(0.005)
    runs["late"] = _collect(engine, *prompts["late"])  # arrives mid-decode; "short" left a free row
    for _, done in runs.values():
        assert done.wait(120)
    assert engine.admitted_mid_batch == before + 1
    # the late request's prefill ran on its own row only: a [1, P] admission into the 2-row cache
    assert any(s[0] == "admit" and s[1] == 2 and s[2] == 1 for s in engine.compiled_shapes), engine.compiled_shapes
    assert runs["late"][0][-1][0] < runs["long"][0][-1][0]  # finished while "long" was still decoding
    for k, (prompt, max_tokens) in prompts.items():
        ref = generate(engine.model, engine.tokenizer, [engine.encode(prompt)], max_new_tokens=max_tokens)
        assert _text(runs[k][0]) == ref.texts[0], k


def test_http_client_streams_sync_and_async_and_books_usage(served):
    import asyncio

    srv, _, _ = served
    c = OpenAIHTTPClient("tiny", base_url=srv.base_url, api_key="none", max_retries=0)
    request = ChatRequest(messages=tuple(HI), max_tokens=20, temperature=0.0)
    whole = c.complete(request)
    parts = list(c.stream(request))

    async def collect():
        return [p async for p in c.astream(request)]

    aparts = asyncio.run(collect())
    assert len(parts) > 1 and "".join(parts) == "".join(aparts) == whole.text
    assert c.num_calls == 3 and c.usage.completion_tokens == 3 * whole.usage.completion_tokens


WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "required": ["city"],
                "properties": {"city": {"enum": ["Paris", "Rome"]}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "time",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "required": ["utc"],
                "properties": {"utc": {"type": "boolean"}},
            },
        },
    },
]


@pytest.mark.parametrize(
    "choice, names", [("required", {"weather", "time"}), ({"type": "function", "function": {"name": "time"}}, {"time"})]
)
def test_forced_tool_choice_always_returns_a_valid_call(served, choice, names):
    _, client, _ = served
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "weather?"}],
        tools=WEATHER,
        tool_choice=choice,
        max_tokens=40,
        temperature=1.0,
        seed=1,
        n=3,
    )
    for c in r.choices:
        assert c.finish_reason == "tool_calls" and len(c.message.tool_calls) == 1
        call = c.message.tool_calls[0].function
        assert call.name in names
        params = next(t["function"]["parameters"] for t in WEATHER if t["function"]["name"] == call.name)
        jsonschema.validate(json.loads(call.arguments), params)


def test_forced_tool_choice_errors_name_the_field(served):
    import openai

    _, client, _ = served
    with pytest.raises(openai.BadRequestError, match="tool_choice.function.name"):
        client.chat.completions.create(
            model="tiny",
            messages=HI,
            tools=WEATHER,
            max_tokens=4,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
