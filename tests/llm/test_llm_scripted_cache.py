import asyncio
import threading
import time

import pytest

from jaxlab.llm import CachedClient, ChatRequest, LLMError, ScriptedClient, user


def test_scripted_replays_in_order_records_requests_and_fails_when_exhausted():
    client = ScriptedClient(["one", "two"])
    assert client.chat(user("a")).text == "one"
    assert client.chat(user("b"), n=2).choices[1].text == "two"
    assert [r.messages[-1]["content"] for r in client.requests] == ["a", "b"]
    assert client.usage.completion_tokens == 3 and client.num_calls == 2
    with pytest.raises(LLMError, match="exhausted"):
        client.chat(user("c"))


def test_cache_resumes_without_calling_the_model(tmp_path):
    first = CachedClient(ScriptedClient(["cached answer"]), tmp_path)
    req = ChatRequest(messages=user("q"), temperature=0.7, seed=3)
    assert first.complete(req).text == "cached answer"
    resumed = CachedClient(ScriptedClient([]), tmp_path)  # any real call would raise
    hit = resumed.complete(req)
    assert hit.text == "cached answer" and hit.cached and resumed.hits == 1
    with pytest.raises(LLMError, match="exhausted"):
        resumed.complete(ChatRequest(messages=user("q"), temperature=0.7, seed=4))


def test_cache_recomputes_a_corrupt_entry(tmp_path):
    client = CachedClient(ScriptedClient(["a", "b"]), tmp_path)
    req = ChatRequest(messages=user("q"))
    client.complete(req)
    client.path(req).write_text("{not json")
    assert client.complete(req).text == "b" and client.misses == 2


def test_batch_and_async_respect_the_concurrency_bound():
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow(request):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1
        return request.messages[-1]["content"].upper()

    client = ScriptedClient(responder=slow, max_concurrency=2)
    reqs = [ChatRequest(messages=user(w)) for w in "abcdef"]
    assert [r.text for r in client.batch(reqs)] == list("ABCDEF")
    assert [r.text for r in asyncio.run(client.abatch(reqs))] == list("ABCDEF")
    assert peak[0] == 2
