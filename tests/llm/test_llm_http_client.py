"""OpenAIHTTPClient (on the openai SDK) against a local fake server that misbehaves on purpose."""

import asyncio
import email.utils
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jaxlab.llm import ChatRequest, LLMError, LLMRequestError, user
from jaxlab.llm.http import HTTPStatusError, OpenAIHTTPClient, retry_after_s


def ok(text="hi", usage=None):
    return (
        200,
        {},
        json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": usage or {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        ),
    )


def err(status, headers=None, message="nope"):
    return (status, headers or {}, json.dumps({"error": {"message": message, "type": "x"}}))


class Fake:
    """Serves the scripted (status, headers, body | callable) replies in order and records request bodies."""

    def __init__(self, replies):
        self.replies, self.bodies = list(replies), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                fake.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status, headers, body = fake.replies.pop(0) if len(fake.replies) > 1 else fake.replies[0]
                if callable(body):
                    body = body()
                if body == "RESET":  # drop the connection with a TCP RST, no response at all
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                data = body.encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def client(fake, model="m", **kw):
    kw.setdefault("backoff_s", 0.01)
    return OpenAIHTTPClient(model, base_url=fake.url, api_key="k", **kw)


def test_retry_after_in_every_form_is_honoured():
    for headers, at_least in (
        ({"retry-after-ms": "400"}, 0.35),
        ({"Retry-After": "1"}, 0.95),
        ({"Retry-After": None}, 1.0),
    ):
        if headers["Retry-After" if "Retry-After" in headers else "retry-after-ms"] is None:  # HTTP date, 2-3 s ahead
            headers = {"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)}
        with Fake([err(429, headers), ok("after wait")]) as fake:
            t0 = time.monotonic()
            assert client(fake).chat(user("x")).text == "after wait"
            assert time.monotonic() - t0 >= at_least, headers
            assert len(fake.bodies) == 2
    assert retry_after_s({"retry-after": "garbage"}) is None


def test_wait_is_capped_and_the_total_deadline_holds():
    with Fake([err(429, {"Retry-After": "3600"}), ok("capped")]) as fake:
        t0 = time.monotonic()
        assert client(fake, max_backoff_s=0.2).chat(user("x")).text == "capped"
        assert time.monotonic() - t0 < 3
    with Fake([err(503, {"retry-after-ms": "300"})]) as fake:
        t0 = time.monotonic()
        with pytest.raises(LLMError, match="deadline"):
            client(fake, max_retries=100, deadline_s=1.0).chat(user("x"))
        assert time.monotonic() - t0 < 2.0 and 2 <= len(fake.bodies) <= 5


def test_5xx_and_truncated_json_are_retried_4xx_is_not():
    truncated = (200, {}, '{"id": "x", "choices": [{"index": 0, "message": {"role": "assis')
    with Fake([err(500), truncated, err(502), ok("third time")]) as fake:
        c = client(fake, max_retries=3)
        assert c.chat(user("x")).text == "third time" and c.retries == 3
    with Fake([err(400, message="bad field")]) as fake:
        with pytest.raises(HTTPStatusError, match="HTTP 400.*bad field") as exc:
            client(fake, max_retries=5).chat(user("x"))
        assert exc.value.status == 400 and len(fake.bodies) == 1
    with Fake([err(503)]) as fake:
        with pytest.raises(LLMError, match="giving up after 3 attempts.*HTTP 503"):
            client(fake, max_retries=2).chat(user("x"))


def test_slow_body_times_out_per_attempt():
    def slow():
        time.sleep(1.5)
        return ok()[2]

    with Fake([(200, {}, slow)]) as fake:
        t0 = time.monotonic()
        with pytest.raises(LLMError, match="no answer within 0.3 s"):
            client(fake, timeout_s=0.3, max_retries=1).chat(user("x"))
        assert time.monotonic() - t0 < 1.4


def test_unset_params_are_not_sent_and_the_policy_renames_them():
    with Fake([ok()]) as fake:
        client(fake).chat(user("x"))
        client(fake, model="gpt-5-mini", policy={"reasoning_effort": "low"}).chat(
            user("x"), max_tokens=50, tool_choice="auto"
        )
        client(fake, policy={"extra_body": {"top_k": 5}}).chat(user("x"), temperature=0.3, max_tokens=7)
    plain, reasoning, extra = fake.bodies
    assert set(plain) == {"model", "messages"}
    assert reasoning["max_completion_tokens"] == 50 and "max_tokens" not in reasoning
    assert reasoning["reasoning_effort"] == "low" and reasoning["tool_choice"] == "auto"
    assert extra["temperature"] == 0.3 and extra["max_tokens"] == 7 and extra["top_k"] == 5


def test_a_rejected_param_fails_before_any_request_or_is_dropped_when_asked():
    with Fake([ok()]) as fake:
        with pytest.raises(LLMRequestError, match=r"does not accept \['temperature'\].*on_unsupported=drop"):
            client(fake, model="gpt-5-mini").chat(user("x"), temperature=0.0)
        with pytest.raises(LLMRequestError, match="unknown key"):
            client(fake, policy={"temprature": 1})
        assert fake.bodies == []
        client(fake, model="gpt-5-mini", policy={"on_unsupported": "drop"}).chat(user("x"), temperature=0.0)
        assert "temperature" not in fake.bodies[0]


def test_usage_per_client_and_per_caller_with_cached_and_reasoning_tokens():
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    with Fake([ok(usage=usage)]) as fake:
        c = client(fake)
        mas, judge = c.for_caller("mas"), c.for_caller("judge")
        mas.chat(user("a"))
        mas.chat(user("b"))
        judge.chat(user("c"))
        out = asyncio.run(c.abatch([ChatRequest(messages=user(str(i))) for i in range(3)]))
    assert len(out) == 3 and c.num_calls == 6
    assert c.usage.prompt_tokens == 60 and c.usage.cached_tokens == 24 and c.usage.reasoning_tokens == 12
    assert mas.usage.completion_tokens == 10 and judge.usage.completion_tokens == 5
    assert set(c.usage_by_caller) == {"mas", "judge"}


def test_connection_resets_are_retried_then_reported():
    with Fake([(0, {}, "RESET"), ok("after reset")]) as fake:
        c = client(fake, max_retries=2)
        assert c.chat(user("x")).text == "after reset" and c.retries == 1
    with Fake([(0, {}, "RESET")]) as fake:
        with pytest.raises(LLMError, match="giving up after 2 attempts: cannot reach"):
            client(fake, max_retries=1).chat(user("x"))


def test_async_calls_are_bounded_and_cancellable():
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow():
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
        return ok()[2]

    async def main(c):
        out = await asyncio.gather(*(c.achat(user(str(i))) for i in range(6)))
        task = asyncio.ensure_future(c.achat(user("never")))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return out

    with Fake([(200, {}, slow)]) as fake:
        c = client(fake, max_concurrency=2)
        t0 = time.monotonic()
        assert [r.text for r in asyncio.run(main(c))] == ["hi"] * 6
        assert peak[0] == 2 and time.monotonic() - t0 >= 0.85 and c.num_calls == 6
