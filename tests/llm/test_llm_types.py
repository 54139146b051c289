import pytest

from jaxlab.llm import ChatRequest, ChatResponse, Choice, LLMRequestError, ToolCall, Usage, user


def test_request_validation_names_the_field():
    with pytest.raises(LLMRequestError, match=r"messages\[0\].role"):
        ChatRequest(messages=({"role": "robot", "content": "hi"},))
    with pytest.raises(LLMRequestError, match="n: expected"):
        ChatRequest(messages=user("hi"), n=0)
    with pytest.raises(LLMRequestError, match="temperature"):
        ChatRequest(messages=user("hi"), temperature=3.0)
    with pytest.raises(LLMRequestError, match=r"tools\[0\]"):
        ChatRequest(messages=user("hi"), tools=({"name": "f"},))
    with pytest.raises(LLMRequestError, match="response_format"):
        ChatRequest(messages=user("hi"), response_format={"type": "xml"})


def test_key_covers_the_full_request():
    a = ChatRequest(messages=user("hi"), temperature=0.5, seed=1)
    assert a.key() == ChatRequest(messages=user("hi"), temperature=0.5, seed=1).key()
    assert a.key() != ChatRequest(messages=user("hi"), temperature=0.5, seed=2).key()
    assert a.key() != ChatRequest(messages=user("hi", system="s"), temperature=0.5, seed=1).key()


def test_openai_round_trip_keeps_tool_calls_and_usage():
    resp = ChatResponse(
        choices=(Choice("", (ToolCall("add", '{"a": 1}', "c1"),), "tool_calls"),), usage=Usage(3, 4), model="m"
    )
    back = ChatResponse.from_openai(resp.to_openai())
    assert back.tool_calls[0].parsed_arguments() == {"a": 1}
    assert back.usage.total_tokens == 7 and back.finish_reason == "tool_calls"
    req = ChatRequest(
        messages=user("x"), tools=({"type": "function", "function": {"name": "add"}},), n=2, stop=("\n",), model="m"
    )
    body = req.to_openai()
    assert body["n"] == 2 and body["stop"] == ["\n"] and body["tools"] == list(req.tools)
    assert "temperature" not in body and "max_tokens" not in body  # unset params are never sent


def test_new_fields_do_not_change_cache_keys_while_unset():
    """Cache entries written before tool_choice / reasoning_effort existed must still hit."""
    import dataclasses
    import hashlib
    import json

    req = ChatRequest(messages=user("hi"), temperature=0.5, max_tokens=9, seed=1)
    old = {k: v for k, v in dataclasses.asdict(req).items() if k not in ("tool_choice", "reasoning_effort")}
    legacy = hashlib.sha256(json.dumps(old, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    assert req.key() == legacy
    assert ChatRequest(messages=user("hi"), temperature=0.5, max_tokens=9, seed=1, tool_choice="none").key() != legacy
    with pytest.raises(LLMRequestError, match="tool_choice"):
        ChatRequest(messages=user("hi"), tool_choice="sometimes")
