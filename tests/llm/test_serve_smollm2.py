"""The real thing: ``jaxlab serve smollm2`` in a subprocess, queried over HTTP on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import jsonschema
import pytest

from jaxlab.llm import user
from jaxlab.llm.http import OpenAIHTTPClient

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jaxlab serve exited early:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError("jaxlab serve did not come up")


def test_http_client_round_trip_to_jaxlab_serve_smollm2():
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxlab.cli", "serve", "smollm2", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        _wait_ready(base + "/models", proc)
        client = OpenAIHTTPClient("smollm2", base_url=base, api_key="none", max_retries=0, timeout_s=240)
        first = client.chat(user("What is the capital of France? Answer in one word."), max_tokens=8, temperature=0.0)
        again = client.chat(user("What is the capital of France? Answer in one word."), max_tokens=8, temperature=0.0)
        assert first.text.strip() and first.text == again.text  # greedy is deterministic across requests
        assert "paris" in first.text.lower()
        assert first.usage.prompt_tokens > 10 and 0 < first.usage.completion_tokens <= 8
        assert first.finish_reason in ("stop", "length")
        import openai

        sdk = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=240)
        chunks = [
            c.choices[0].delta.content
            for c in sdk.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
                max_tokens=8,
                temperature=0.0,
                stream=True,
            )
            if c.choices and c.choices[0].delta.content
        ]
        assert "".join(chunks) == first.text  # streamed = not streamed, token by token
        tool_turns = [
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"},
        ]
        r = sdk.chat.completions.create(model="smollm2", messages=tool_turns, max_tokens=8)
        assert r.choices[0].message.content is not None
        schema = {
            "type": "object",
            "additionalProperties": False,
            "required": ["capital", "population_millions"],
            "properties": {
                "capital": {"type": "string", "maxLength": 20},
                "population_millions": {"type": "integer", "minimum": 0, "maximum": 100},
            },
        }
        r = sdk.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Give the capital of France and its population."}],
            max_tokens=48,
            temperature=0.0,
            logprobs=True,
            top_logprobs=2,
            response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        )
        answer = json.loads(r.choices[0].message.content)  # constrained decoding: valid JSON, schema-shaped
        jsonschema.validate(answer, schema)
        assert "paris" in answer["capital"].lower()
        assert len(r.choices[0].logprobs.content) == r.usage.completion_tokens - 1  # the stop token has none
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": {
                        "type": "object",
                        "required": ["city"],
                        "properties": {"city": {"type": "string", "maxLength": 20}},
                    },
                },
            }
        ]
        ask = [{"role": "user", "content": "What is the weather in Paris?"}]
        r = sdk.chat.completions.create(
            model="smollm2", messages=ask, tools=tools, tool_choice="required", max_tokens=40, temperature=0.0
        )
        call = r.choices[0].message.tool_calls[0]
        assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "weather"
        assert "paris" in json.loads(call.function.arguments)["city"].lower()
        result = [
            *ask,
            r.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ]
        r = sdk.chat.completions.create(model="smollm2", messages=result, tools=tools, max_tokens=24, temperature=0.0)
        assert r.choices[0].message.content or r.choices[0].message.tool_calls
    finally:
        proc.terminate()
        proc.wait(timeout=30)
