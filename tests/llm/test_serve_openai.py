"""The official ``openai`` client drives ``jaxlab serve`` (FastAPI + uvicorn) on a tiny random model.

The model is random (fast to compile) but the tokenizer and chat template are
SmolLM2's, so prompts, normalisation and token streaming are the real path.
"""

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from jaxlab.llm.engine import BatchEngine, Job

HI = [{"role": "user", "content": "hi"}]  # the shared ``served`` fixture is in conftest.py


def test_models_chat_and_completions(served):
    srv, client, _ = served
    assert [m.id for m in client.models.list()] == ["tiny"]
    r = client.chat.completions.create(model="tiny", messages=HI, max_tokens=6)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content and r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 10
    assert r.choices[0].finish_reason in ("length", "stop")
    c = client.completions.create(model="tiny", prompt="The capital of France is", max_tokens=5)
    assert c.object == "text_completion" and c.choices[0].text and c.usage.completion_tokens <= 5


def test_stream_arrives_token_by_token_before_generation_ends(served):
    _, client, engine = served
    steps_at_first, chunks, usage = None, [], None
    for chunk in client.chat.completions.create(
        model="tiny", messages=HI, max_tokens=180, temperature=0, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            if steps_at_first is None:
                steps_at_first = engine.decode_steps
            chunks.append(chunk.choices[0].delta.content)
    full = client.chat.completions.create(model="tiny", messages=HI, max_tokens=180, temperature=0)
    assert len(chunks) > 20 and "".join(chunks) == full.choices[0].message.content  # greedy: same text
    assert engine.decode_steps - steps_at_first > 50  # the first chunk came while most steps were still ahead
    assert usage.completion_tokens == full.usage.completion_tokens and usage.prompt_tokens == full.usage.prompt_tokens


def test_tool_turns_null_content_and_content_parts_render_through_the_template(served):
    _, client, _ = served
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "developer", "content": "answer now"},
    ]
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    r = client.chat.completions.create(
        model="tiny", messages=messages, tools=tools, max_tokens=4, tool_choice="auto", parallel_tool_calls=False
    )
    assert r.choices[0].finish_reason in ("length", "stop", "tool_calls")


def test_stop_strings_n_and_unused_standard_fields(served, caplog):
    _, client, _ = served
    base = (
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, temperature=0)
        .choices[0]
        .message.content
    )
    stop = base[len(base) // 2 : len(base) // 2 + 3]
    cut = client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, stop=[stop], temperature=0)
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == base[: base.index(stop)]
    caplog.set_level("WARNING", logger="jaxlab.serve")
    r = client.chat.completions.create(
        model="tiny",
        messages=HI,
        max_tokens=3,
        n=2,
        temperature=0.9,
        seed=5,
        logprobs=True,
        top_logprobs=2,
        frequency_penalty=0.5,
        presence_penalty=0.1,
        user="u",
        extra_body={"made_up": 1},
    )
    assert [c.index for c in r.choices] == [0, 1] and r.usage.completion_tokens <= 6
    assert "frequency_penalty" in caplog.text and "not OpenAI fields: ['made_up']" in caplog.text


def test_concurrent_requests_share_a_batch_and_never_recompile(served):
    _, client, engine = served
    prompts = [[{"role": "user", "content": f"count to {i}"}] for i in range(4)]
    alone = [
        client.chat.completions.create(model="tiny", messages=p, max_tokens=7, temperature=0).choices[0].message.content
        for p in prompts
    ]

    def ask(args):
        i, max_tokens = args
        return client.chat.completions.create(model="tiny", messages=prompts[i], max_tokens=max_tokens, temperature=0)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ask, [(0, 5), (1, 9), (2, 17), (3, 30)]))  # warm (4, 64, 256)
        shapes, batches = set(engine.compiled_shapes), engine.batches_run
        t0 = time.perf_counter()
        together = list(pool.map(ask, [(0, 7), (1, 7), (2, 7), (3, 7)]))
        elapsed = time.perf_counter() - t0
    assert engine.compiled_shapes == shapes, "a request after warm-up compiled a new shape"
    assert engine.batches_run - batches <= 2 and engine.max_rows_seen == 4
    assert [r.choices[0].message.content for r in together] == alone  # padding rows into a batch changes nothing
    assert elapsed < 30


def _conn(srv) -> http.client.HTTPConnection:
    host, port = srv.server.servers[0].sockets[0].getsockname()[:2]
    return http.client.HTTPConnection(host, port, timeout=30)


def _post(conn, path, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


BAD = [  # (path, body, status, text in the message)
    ("/v1/no-such-route", {}, 404, "Not Found"),
    ("/v1/chat/completions", {"model": "gpt-4", "messages": HI}, 404, "not found"),
    ("/v1/chat/completions", {"model": "tiny", "messages": HI, "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/chat/completions", {"model": "tiny"}, 400, "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": HI, "temperature": "hot"}, 400, "temperature"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "bot", "content": "x"}]}, 400, "role"),
    (
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        400,
        "only text parts",
    ),
    ("/v1/chat/completions", {"model": "tiny", "messages": HI, "max_tokens": 5000}, 400, "max_model_len"),
    ("/v1/chat/completions", {"model": "tiny", "messages": HI, "n": 9}, 400, "max-batch"),
    ("/v1/chat/completions", {"model": "tiny", "messages": HI, "stream": "yes"}, 400, "stream"),
    ("/v1/completions", {"model": "tiny", "prompt": ""}, 400, "prompt"),
    ("/v1/chat/completions", None, 400, "not valid JSON"),
]


def test_each_malformed_request_is_a_json_4xx_and_the_connection_stays_usable(served):
    srv, _, _ = served
    conn = _conn(srv)
    conn.request("GET", "/health")
    assert conn.getresponse().read() and conn.sock is not None
    sock = conn.sock
    for path, body, status, text in BAD:
        got, payload = _post(conn, path, body, raw=b"{not json" if body is None else None)
        assert got == status, (path, body, payload)
        assert text in payload["error"]["message"] and payload["error"]["type"], payload
        assert conn.sock is sock, f"connection was dropped after {body}"
    got, payload = _post(conn, "/v1/chat/completions", {"model": "tiny", "messages": HI, "max_tokens": 2})
    assert got == 200 and payload["choices"][0]["message"]["content"] is not None and conn.sock is sock
    conn.request("GET", "/health")
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}


def test_oversized_and_short_bodies_are_answered_not_hung(served):
    srv, _, _ = served
    got, payload = _post(_conn(srv), "/v1/chat/completions", None, raw=b"x" * (65 << 10))
    assert got == 413 and "exceeds the limit" in payload["error"]["message"]
    host, port = srv.server.servers[0].sockets[0].getsockname()[:2]
    with socket.create_connection((host, port), timeout=10) as s:  # promises 100 bytes, sends 10
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"model": '
        )
        t0 = time.perf_counter()
        head = s.recv(65536).decode()
        assert head.startswith("HTTP/1.1 408") and "read_timeout" in head and time.perf_counter() - t0 < 5
    conn = _conn(srv)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200


def test_warmup_compiles_the_buckets_so_requests_do_not(served):
    _, _, engine = served
    small = BatchEngine(engine.model, engine.tokenizer, max_batch=1, max_model_len=512)
    try:
        # a prefill per cache (256, 512 slots) and a decode per attention span up to 364 slots: 64..256, 64..512
        assert small.warmup(max_prompt=64, max_new_tokens=300) == 2 + 3 + 4
        before = set(small.compiled_shapes)
        events = []
        done = threading.Event()

        def emit(ev):
            events.append(ev)
            if ev[0] in ("finish", "error"):
                done.set()

        small.submit(Job(prompt_ids=engine.encode("hello there"), max_tokens=250, emit=emit))
        assert done.wait(120) and events[-1][0] == "finish" and small.compiled_shapes == before
    finally:
        small.close()


def test_serve_loads_a_local_hf_folder(served, tmp_path):
    """``jaxlab serve runs/<ptl>/hf_model`` path: config.json + safetensors + tokenizer files."""
    from jaxlab.llm.serve_cli import load_backend
    from jaxlab.models.hf import to_hf

    _, _, engine = served
    folder = tmp_path / "hf_model"
    to_hf(engine.model, folder)
    engine.tokenizer.save_pretrained(folder)
    backend = load_backend(str(folder), max_batch=1, max_model_len=256)
    try:
        assert backend.name == "hf_model" and backend.engine.max_model_len == 256
        events, done = [], threading.Event()
        backend.engine.submit(
            Job(
                prompt_ids=engine.encode("hello"),
                max_tokens=3,
                emit=lambda ev: (events.append(ev), ev[0] != "delta" and done.set()),
            )
        )
        assert done.wait(120) and events[-1][0] == "finish" and events[-1][3] <= 3
    finally:
        backend.close()
