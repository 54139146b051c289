"""A real HTTP round trip: the OpenAI client against ``jaxlab serve`` on 127.0.0.1."""

import json
import urllib.request

import pytest

from jaxlab.llm import ChatRequest, LLMError, ScriptedClient, tool_reply, user
from jaxlab.llm.http import HTTPStatusError, OpenAIHTTPClient
from jaxlab.llm.scripted import echo_client
from jaxlab.llm.serve import BackgroundServer
from jaxlab.llm.serve_cli import main

TOOLS = ({"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},)


def test_round_trip_text_tools_usage_and_n():
    backend = ScriptedClient(["hello there", tool_reply("add", {"a": 1, "b": 2}), "x"])
    with BackgroundServer(backend, model_name="scripted") as srv:
        client = OpenAIHTTPClient("scripted", base_url=srv.base_url, api_key="k", max_retries=0)
        r = client.chat(user("hi"), temperature=0.2, max_tokens=16)
        assert r.text == "hello there" and r.finish_reason == "stop" and r.usage.completion_tokens == 2
        r = client.chat(user("add"), tools=TOOLS)
        assert r.tool_calls[0].name == "add" and r.tool_calls[0].parsed_arguments() == {"a": 1, "b": 2}
        assert len(client.chat(user("n"), n=3).choices) == 3
        with urllib.request.urlopen(srv.base_url + "/models") as resp:
            assert json.loads(resp.read())["data"][0]["id"] == "scripted"
    sent = backend.requests
    assert sent[0].temperature == 0.2 and sent[0].max_tokens == 16 and sent[1].tools == TOOLS and sent[2].n == 3


def test_4xx_is_a_clear_error_and_not_retried():
    backend = ScriptedClient(["never"])
    with BackgroundServer(backend, model_name="m") as srv:
        client = OpenAIHTTPClient("m", base_url=srv.base_url, max_retries=3, backoff_s=5.0)
        with pytest.raises(HTTPStatusError, match=r"HTTP 400.*messages\[0\].role") as exc:
            # ``extra`` overrides the body, smuggling an invalid role past client-side checks
            client.complete(ChatRequest(messages=user("x"), extra={"messages": [{"role": "bot"}]}))
        assert exc.value.status == 400
    assert backend.requests == []


def test_5xx_is_retried_with_backoff():
    replies = [LLMError("model overloaded"), LLMError("still overloaded"), "finally"]
    with BackgroundServer(ScriptedClient(replies), model_name="m") as srv:
        client = OpenAIHTTPClient("m", base_url=srv.base_url, max_retries=2, backoff_s=0.01)
        assert client.chat(user("x")).text == "finally"
    with BackgroundServer(ScriptedClient([LLMError("down")] * 2), model_name="m") as srv:
        client = OpenAIHTTPClient("m", base_url=srv.base_url, max_retries=1, backoff_s=0.01)
        with pytest.raises(LLMError, match="giving up after 2 attempts.*down"):
            client.chat(user("x"))


def test_missing_base_url_and_unreachable_server_are_explained(monkeypatch):
    monkeypatch.delenv("JAXLAB_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="JAXLAB_LLM_BASE_URL"):
        OpenAIHTTPClient("m")
    with BackgroundServer(echo_client()) as srv:
        url = srv.base_url
    dead = OpenAIHTTPClient("m", base_url=url, max_retries=0, timeout_s=2)
    with pytest.raises(LLMError, match="cannot reach"):
        dead.chat(user("x"))


def test_serve_main_rejects_unknown_model():
    with pytest.raises(SystemExit, match="expected one of.*smollm2.*or a folder with config.json"):
        main(["no-such-model"])


def test_openai_sdk_tool_call_round_trip_streamed_and_not():
    import openai

    backend = ScriptedClient([tool_reply("add", {"a": 1, "b": 2}), "3", tool_reply("add", {"a": 2, "b": 2})])
    with BackgroundServer(backend, model_name="scripted") as srv:
        sdk = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
        first = sdk.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "1+2?"}], tools=list(TOOLS), tool_choice="auto"
        )
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {
            "a": 1,
            "b": 2,
        }
        history = [
            {"role": "user", "content": "1+2?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "3"},
        ]
        second = sdk.chat.completions.create(model="scripted", messages=history, tools=list(TOOLS))
        assert second.choices[0].message.content == "3"
        seen = backend.requests[1].messages
        assert seen[1]["role"] == "assistant" and seen[1]["content"] == "" and seen[1]["tool_calls"][0]["id"] == call.id
        assert seen[2] == {"role": "tool", "content": "3", "tool_call_id": call.id}
        deltas = [
            c.choices[0].delta
            for c in sdk.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "2+2?"}], tools=list(TOOLS), stream=True
            )
            if c.choices
        ]
        streamed = [t for d in deltas for t in (d.tool_calls or [])]
        # vLLM-shaped: the first fragment names the call, the arguments arrive in pieces to concatenate
        arguments = "".join(t.function.arguments or "" for t in streamed if t.index == 0)
        assert streamed[0].function.name == "add" and json.loads(arguments) == {"a": 2, "b": 2}


def test_backend_exception_is_a_500_with_its_message_and_the_server_stays_up():
    import openai

    with BackgroundServer(ScriptedClient([LLMError("weights on fire"), "fine"]), model_name="m") as srv:
        sdk = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="weights on fire"):
            sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert (
            sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            .choices[0]
            .message.content
            == "fine"
        )


def test_jaxlab_serve_exits_cleanly_on_sigterm():
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxlab.cli", "serve", "echo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    assert json.loads(resp.read()) == {"status": "ok"}
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() else "slow"
                time.sleep(0.2)
        client = OpenAIHTTPClient("echo", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        assert client.chat(user("ping")).text == "ping"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "echo stopped cleanly" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
