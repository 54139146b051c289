"""LocalClient against a fake generator with the real generator's signature."""

import json
from types import SimpleNamespace

from jaxlab.llm import ChatRequest, user
from jaxlab.llm.local import LocalClient
from jaxlab.llm.toolparse import parse_tool_calls

TOOLS = ({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},)


class FakeTokenizer:
    eos_token_id = 2

    def apply_chat_template(self, messages, tools=None, add_generation_prompt=False, tokenize=True):
        assert add_generation_prompt and not tokenize
        head = f"<tools>{json.dumps(tools)}</tools>" if tools else ""
        return head + "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def __call__(self, text):
        return {"input_ids": text.split("<")}


def fake_generate(replies, calls):
    def generate(
        model,
        tokenizer,
        prompts,
        *,
        max_new_tokens,
        temperature=0.0,
        top_k=None,
        top_p=None,
        key=None,
        stop_token_ids=None,
    ):
        calls.append(
            dict(prompts=prompts, max_new_tokens=max_new_tokens, temperature=temperature, key=key, stop=stop_token_ids)
        )
        texts = [replies[i % len(replies)] for i in range(len(prompts))]
        return SimpleNamespace(
            texts=texts, token_ids=[[1] * len(t.split()) for t in texts], finish_reasons=["stop"] * len(texts)
        )

    return generate


def test_plain_chat_uses_the_template_and_counts_tokens():
    calls = []
    client = LocalClient("model", FakeTokenizer(), fake_generate(["four words of text"], calls))
    r = client.chat(user("2+2?", system="be brief"), max_tokens=7)
    assert r.text == "four words of text" and r.usage.completion_tokens == 4 and r.usage.prompt_tokens > 0
    assert calls[0]["prompts"] == ["<system>be brief<user>2+2?<assistant>"]
    assert calls[0]["max_new_tokens"] == 7 and calls[0]["stop"] == [2] and calls[0]["key"] is None


def test_n_samples_are_one_batched_call_with_a_key():
    calls = []
    client = LocalClient("model", FakeTokenizer(), fake_generate(["a", "b", "c"], calls))
    r = client.complete(ChatRequest(messages=user("x"), n=3, temperature=0.8, seed=5))
    assert [c.text for c in r.choices] == ["a", "b", "c"] and len(calls) == 1
    assert len(calls[0]["prompts"]) == 3 and calls[0]["key"] is not None


def test_tool_calls_are_parsed_from_tagged_and_bare_json():
    tagged = 'Checking.<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    calls = []
    client = LocalClient("model", FakeTokenizer(), fake_generate([tagged], calls))
    r = client.chat(user("weather?"), tools=TOOLS)
    assert r.finish_reason == "tool_calls" and r.text == "Checking."
    assert r.tool_calls[0].name == "get_weather" and r.tool_calls[0].parsed_arguments() == {"city": "Oslo"}
    assert calls[0]["prompts"][0].startswith("<tools>") and '"get_weather"' in calls[0]["prompts"][0]

    bare = '{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}'
    client = LocalClient("model", FakeTokenizer(), fake_generate([bare], []))
    assert client.chat(user("w"), tools=TOOLS).tool_calls[0].parsed_arguments() == {"city": "Rome"}


def test_json_answers_are_not_mistaken_for_undeclared_tools():
    text, calls = parse_tool_calls('{"name": "Ada", "arguments": {}}', {"get_weather"})
    assert calls == [] and text.startswith("{")
    text, calls = parse_tool_calls(
        '<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]</tool_call>'
    )
    assert [c.name for c in calls] == ["a", "b"] and text == ""


def test_json_response_format_adds_an_instruction():
    calls = []
    client = LocalClient("model", FakeTokenizer(), fake_generate(['{"x": 1}'], calls))
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}
    client.chat(user("give json"), response_format=schema)
    assert "JSON schema" in calls[0]["prompts"][0]
