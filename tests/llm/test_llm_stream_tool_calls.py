"""Streamed tool calls: the client assembles ``delta.tool_calls`` fragments by index, and ``jaxlab serve``
streams forced tool calls as vLLM-shaped deltas (id + name first, then argument fragments)."""

import asyncio
import json


from jaxlab.llm import ChatRequest
from jaxlab.llm.http import OpenAIHTTPClient
from jaxlab.llm.serve import ARGUMENT_FRAGMENT
from tests.llm.test_llm_http_client import Fake
from tests.llm.test_serve_features import WEATHER

BASE = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}


def _sse(deltas, finish="tool_calls"):
    chunks = [{**BASE, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({**BASE, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


# two calls interleaved the way vLLM streams parallel calls: a header per index, then argument fragments
INTERLEAVED = [
    {"role": "assistant", "content": "Let me check. "},
    {
        "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
    {
        "tool_calls": [
            {"index": 1, "id": "call_b", "type": "function", "function": {"name": "time", "arguments": '{"u'}}
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Pa'}}]},
    {
        "tool_calls": [
            {"index": 1, "function": {"arguments": 'tc": true}'}},
            {"index": 0, "function": {"arguments": 'ris"}'}},
        ]
    },
]


def test_fragments_are_assembled_by_index_sync_and_async():
    with Fake([(200, {"Content-Type": "text/event-stream"}, _sse(INTERLEAVED))]) as fake:
        c = OpenAIHTTPClient("m", base_url=fake.url, api_key="k", max_retries=0)
        request = ChatRequest(messages=({"role": "user", "content": "weather and time?"},), tools=tuple(WEATHER))
        stream = c.stream_chat(request)
        texts = list(stream)

        async def collect():
            s = c.astream_chat(request)
            return [t async for t in s], s.response

        atexts, aresponse = asyncio.run(collect())
    for got, resp in ((texts, stream.response), (atexts, aresponse)):
        assert got == ["Let me check. "]
        assert resp.finish_reason == "tool_calls" and resp.text == "Let me check. "
        assert [(t.id, t.name, t.parsed_arguments()) for t in resp.tool_calls] == [
            ("call_a", "weather", {"city": "Paris"}),
            ("call_b", "time", {"utc": True}),
        ]
        assert resp.usage.completion_tokens == 7
    assert c.num_calls == 2 and c.usage.prompt_tokens == 10


def test_jaxlab_serve_streams_tool_calls_as_deltas(served):
    srv, client, _ = served
    kw = dict(
        model="tiny",
        messages=[{"role": "user", "content": "time?"}],
        tools=WEATHER,
        max_tokens=40,
        tool_choice={"type": "function", "function": {"name": "weather"}},
        temperature=0.0,
    )
    whole = client.chat.completions.create(**kw).choices[0].message.tool_calls
    deltas, reasons = [], []
    for chunk in client.chat.completions.create(**kw, stream=True):  # the official client's own stream
        for ch in chunk.choices:
            deltas += ch.delta.tool_calls or []
            reasons.append(ch.finish_reason)
    assert deltas[0].id and deltas[0].function.name == "weather" and deltas[0].function.arguments == ""
    args = whole[0].function.arguments
    assert len(deltas) == 1 + -(-len(args) // ARGUMENT_FRAGMENT) > 2
    assert all(d.index == 0 and d.id is None and d.function.name is None for d in deltas[1:])
    assert "".join(d.function.arguments for d in deltas) == whole[0].function.arguments
    assert reasons[-1] == "tool_calls"
    ours = OpenAIHTTPClient("tiny", base_url=srv.base_url, api_key="none", max_retries=0)
    stream = ours.stream_chat(
        ChatRequest(
            messages=tuple(kw["messages"]),
            tools=tuple(WEATHER),
            max_tokens=40,
            temperature=0.0,
            tool_choice=kw["tool_choice"],
        )
    )
    assert list(stream) == []  # no content, only the call
    (call,) = stream.response.tool_calls
    assert (call.name, call.arguments) == ("weather", whole[0].function.arguments)
    assert stream.response.finish_reason == "tool_calls"
