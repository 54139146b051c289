"""The Text2Vis eval runner: gold replies pass, broken ones fail, LLM judges through a scripted client, the
tiny random model end to end through ``run`` (outputs, resume, refusal), and a run whose judges never answer."""

import dataclasses
import json

import pytest

from experiments.text2vis.eval_runner import (
    Config,
    DataSection,
    ExecSection,
    GenerationSection,
    ModelSection,
    evaluate,
    gold_replies,
    make_judges,
    run,
)
from experiments.text2vis.generator import make_tasks
from jaxlab.llm import ChatResponse, Choice, ClientConfig, LLMError, ScriptedClient
from jaxlab.runs import RunDirError, RunFailedError


def _gold_reply(task) -> str:
    return gold_replies([task])[0]


BROKEN = json.dumps(
    {"answer": "no idea", "code": "import matplotlib.pyplot as plt\nraise ValueError('boom')\nplt.show()"}
)


@pytest.fixture(scope="module")
def tasks():
    return make_tasks("heldout", 7, seed=3)


def test_gold_replies_pass_and_a_broken_reply_fails(tasks):
    chosen = tasks[:3]
    cfg = Config()
    replies = {chosen[0].id: _gold_reply(chosen[0]), chosen[1].id: _gold_reply(chosen[1]), chosen[2].id: BROKEN}
    results = evaluate(chosen, lambda chunk: [replies[t.id] for t in chunk], make_judges(cfg), batch_size=2)
    samples = [s for s, _ in results]
    assert [s.id for s in samples] == [t.id for t in chosen]
    assert [s.executed for s in samples] == [True, True, False]
    assert [s.answer_match for s in samples] == [True, True, False]
    assert [s.passed for s in samples] == [True, True, False], [(s.readability, s.correctness) for s in samples]
    assert samples[0].png.startswith(b"\x89PNG") and samples[2].png is None
    assert results[2][1]["status"] == "error" and "boom" in results[2][1]["stderr"]
    assert results[0][1]["format_ok"] and results[2][1]["format_ok"]  # broken code, well-formed JSON


def test_rl_judges_go_through_the_client_and_fallbacks_are_counted(tasks):
    t_ok, t_bad_judge = tasks[3], tasks[4]

    def reply(request):
        content = request.messages[0]["content"]
        if isinstance(content, list):  # the visual judge: image part + text part
            assert content[0]["type"] == "image_url" and content[0]["image_url"]["url"].startswith("data:image/png")
            return '{"readability_score": 4, "visual_correctness_score": 3}'
        if t_bad_judge.question in content:
            return "I think it matches."  # unparseable: both scores 0, counted
        return '{"answer_score": 1, "code_intent_score": 0.5}'

    def respond(request):  # a whole ChatResponse: ScriptedClient's word count cannot read content parts
        return ChatResponse(choices=(Choice(text=reply(request)),), model="scripted")

    client = ScriptedClient(responder=respond)
    cfg = Config(client=ClientConfig(kind="http", model="judge"), vision_model="vlm", judge_prompts="rl_text2vis")
    judges = make_judges(cfg, client=client)
    assert judges.kind == "llm"
    results = evaluate([t_ok, t_bad_judge], lambda chunk: [_gold_reply(t) for t in chunk], judges)
    ok, bad = (s for s, _ in results)
    assert (ok.answer_match, ok.executed, ok.readability, ok.correctness, ok.passed) == (True, True, 4.0, 3.0, False)
    assert (bad.answer_match, bad.executed) == (False, True)
    assert judges.stats()["text"] == {"calls": 2, "fallbacks": 1}
    assert {r.model for r in client.requests} == {"judge", "vlm"}


def _cfg(tmp_path, **kw) -> Config:
    base = dict(
        output_dir=str(tmp_path / "run"),
        progress=False,
        model=ModelSection(name="tiny-llama"),
        data=DataSection(n_tasks=2, seed=1),
        generation=GenerationSection(max_new_tokens=4, batch_size=2),
        execution=ExecSection(workers=1),
        grid_n=2,
    )
    base.update(kw)
    return Config(**base)


def test_run_with_the_tiny_model_writes_outputs_resumes_and_refuses_another_config(tmp_path):
    cfg = _cfg(tmp_path)
    result = run(cfg)
    out = tmp_path / "run"
    data = json.loads((out / "results.json").read_text())
    assert data["overall"]["n"] == 2 and data["judge"] == "programmatic"
    assert data["overall"]["execution_rate"] == 0.0 and data["format_rate"] == 0.0  # 4 random bytes are no JSON
    assert result["overall"] == data["overall"]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2
    assert (out / "results.md").read_text().startswith("| kind |") and (out / "charts.png").stat().st_size > 1000

    def must_not_generate(chunk):
        raise AssertionError("a resumed run must reuse the samples already judged")

    again = run(dataclasses.replace(cfg, progress=True), generate_fn=must_not_generate)
    assert again["resumed_samples"] == 2 and again["overall"] == data["overall"]
    with pytest.raises(RunDirError, match="data.n_tasks"):
        run(dataclasses.replace(cfg, data=DataSection(n_tasks=3, seed=1)), generate_fn=must_not_generate)


def test_oracle_run_uses_gold_replies_without_a_model(tmp_path):
    cfg = _cfg(
        tmp_path,
        oracle=True,
        model=ModelSection(name="smollm2-135m-instruct", path="/nonexistent"),
        data=DataSection(n_tasks=1, seed=2),
    )
    result = run(cfg)  # would fail loading the model folder if it tried
    assert result["model"] == "oracle (gold replies)" and result["format_rate"] == 1.0
    assert result["overall"]["pass_rate"] == 1.0


def test_a_run_whose_judge_never_answers_fails_loudly(tmp_path):
    def down(request):
        raise LLMError("connection refused")

    cfg = _cfg(tmp_path, client=ClientConfig(kind="http", model="judge"))
    with pytest.raises(RunFailedError, match="every text judge call failed"):
        run(cfg, generate_fn=lambda chunk: ["not json"] * len(chunk), judge_client=ScriptedClient(responder=down))
    assert not (tmp_path / "run" / "results.json").exists()


def test_benchmark_judges_prompts_image_message_and_half_step_grid(tasks):
    t_ok, t_bad = tasks[5], tasks[6]
    seen = []

    def respond(request):
        seen.append(request)
        first = request.messages[0]["content"]
        if len(request.messages) == 2:  # the chart judge: prompt, then the image as its own user message
            assert request.messages[1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
            text = (
                '```json\n{"Readability and Quality Score": "4.5", "Chart Correctness Score": "3.7"}```'
                if t_ok.question in first
                else "Looks fine to me"
            )
        else:
            assert "Ground Truth Answer" in first and "Generated Answer" in first
            text = "1" if f'"{t_ok.answer}"' in first and t_ok.answer != t_bad.answer else "yes"
        return ChatResponse(choices=(Choice(text=text),), model="scripted")

    cfg = Config(client=ClientConfig(kind="http", model="gpt"), judge_prompts="text2vis")
    judges = make_judges(cfg, client=ScriptedClient(responder=respond))
    results = evaluate([t_ok, t_bad], lambda chunk: [_gold_reply(t) for t in chunk], judges)
    ok, bad = (s for s, _ in results)
    assert (ok.answer_match, ok.readability, ok.correctness, ok.passed) == (True, 4.5, 3.5, True)  # 3.7 -> 3.5
    assert (bad.answer_match, bad.readability, bad.correctness) == (False, 0.0, 0.0)
    st = judges.stats()
    assert st["text"] == {"calls": 2, "fallbacks": 1} and st["visual"] == {"calls": 2, "off_grid": 1, "fallbacks": 1}


@pytest.mark.parametrize(
    "reply,expected",
    [
        ('{"Readability and Quality Score": "4.5", "Chart Correctness Score": 3}', (4.5, 3.0, True, False)),
        ('```json\n{"Readability and Quality Score": 4.2, "Chart Correctness Score": 7}\n```', (4.0, 5.0, True, True)),
        ('{"Readability and Quality Score": "n/a"}', (0.0, 0.0, False, False)),
        ("[4, 5]", (0.0, 0.0, False, False)),
        ('{"Chart Correctness Score": "NaN"}', (0.0, 0.0, False, False)),
    ],
)
def test_parse_chart_scores(reply, expected):
    from experiments.text2vis.benchmark_judges import parse_chart_scores

    scores, parsed, off_grid = parse_chart_scores(reply)
    assert (scores.readability, scores.correctness, parsed, off_grid) == expected


def test_gold_top_k_replies_match_under_json_and_not_under_released():
    """The oracle's replies to top-k tasks (JSON-list answers) match with the json parser; the released
    parser cuts them at the first escaped quote, as released."""
    topk = [t for t in make_tasks("heldout", 48, seed=0) if t.kind == "top_k"][:2]
    assert topk and all(t.answer.startswith('["') for t in topk)
    judges = make_judges(Config())
    for parser, expected in (("json", True), ("released", False)):
        results = evaluate(topk, gold_replies, judges, parser=parser)
        assert [s.answer_match for s, _ in results] == [expected] * len(topk), parser
        assert all(s.executed for s, _ in results)
        assert results[0][1]["pred_answer"] == (topk[0].answer if expected else "[\\")
