import pytest

from experiments.mas_prove.context import STRATEGIES, build_contexts
from experiments.mas_prove.core import MASContext, Meter, Step, VerifierError
from experiments.mas_prove.frameworks import FRAMEWORKS, make_framework
from experiments.mas_prove.frameworks.code import extract_code, run_generated
from experiments.mas_prove.frameworks.common import answer_key
from experiments.mas_prove.verifiers import FunctionOutcomeScorer, LLMJudge, OutcomeRewardModel, make_verifier

from jaxlab.llm import ScriptedClient
from mas_prove_helpers import make_client

TASK = "Ava has 3 coins and Ben has 4 more than Ava. How many coins does Ben have?"


def _ctx(client, level="none", verifier="judge_ranking", strategy="raw", n=3):
    meter, vmeter = Meter(), Meter()
    v = make_verifier(verifier, client, vmeter) if level != "none" else None
    return MASContext(client, TASK, v, level, strategy, n, meter=meter, vmeter=vmeter)


@pytest.mark.parametrize("level", ["none", "agent", "iteration"])
@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_every_framework_runs_at_every_hook_level(name, level):
    ctx = _ctx(make_client("7"), level)
    answer = make_framework(name).solve(ctx)
    assert answer_key(answer) == ("7",)
    assert ctx.steps and ctx.meter.calls > 0 and ctx.meter.usage.total_tokens > 0
    assert ctx.stats["fallbacks"] == 0
    assert (ctx.stats["verifications"] > 0) == (level != "none")
    if level == "iteration":
        assert all(v["where"].startswith("round") for v in ctx.verifications)


@pytest.mark.parametrize("verifier", ["judge_ranking", "judge_pointwise", "fare", "orm", "prm"])
def test_agent_level_search_keeps_the_verified_candidate(verifier):
    # only one sample in three is right: unverified debate ends wrong, best-of-3 with a verifier ends right
    base = _ctx(make_client("7", right_every=3))
    assert answer_key(make_framework("debate").solve(base)) != ("7",)
    ctx = _ctx(make_client("7", right_every=3), "agent", verifier)
    assert answer_key(make_framework("debate").solve(ctx)) == ("7",)
    assert all(s.output.endswith("\\boxed{7}") for s in ctx.steps)


def test_verifier_failure_falls_back_visibly_and_is_counted():
    ctx = _ctx(make_client("7", judge="garbage"), "agent")
    make_framework("debate").solve(ctx)
    assert ctx.stats["fallbacks"] == ctx.stats["verifications"] == 8  # 2 agents x (1 + 3 rounds)
    assert ctx.stats["fallback:VerifierError"] == 8
    assert all("no <ranking>" in v["fallback"] and v["chosen"] == 0 for v in ctx.verifications)


def test_context_strategies_show_the_verifier_what_they_promise():
    # the authors' hook: trajectory "Step i: ..." joined by blank lines, candidate = context + "\n" + step
    steps = [Step("a", 0, "p", "first step"), Step("b", 0, "p", "second step")]
    calls = []

    def summarize(text):
        calls.append(text)
        return f"S{len(calls)}"

    out = {s: build_contexts(s, TASK, steps, ["c1", "c2"], summarize) for s in STRATEGIES}
    assert out["raw"] == [
        "Step 1: first step\n\nStep 2: second step\nc1",
        "Step 1: first step\n\nStep 2: second step\nc2",
    ]
    assert out["none"] == ["\nc1", "\nc2"]
    assert out["summary"] == ["S1", "S2"] and calls[:2] == [out["raw"][0], out["raw"][1]]  # context & step, each
    assert out["summary_current"] == ["S3\nc1", "S3\nc2"] and calls[2] == "Step 1: first step\n\nStep 2: second step"
    assert len(calls) == 3
    assert build_contexts("summary_current", TASK, [], ["c"], summarize) == ["\nc"] and len(calls) == 3


def test_the_summariser_is_the_authors_and_books_on_the_verifier_meter():
    ctx = _ctx(make_client("7"), "agent", "judge_ranking", "summary")
    make_framework("debate").solve(ctx)
    reqs = ctx.client.requests
    summaries = [
        r for r in reqs if "summarization assistant for multi-agent system processes" in r.messages[0]["content"]
    ]
    judges = [r for r in reqs if "Please act as an impartial judge" in r.messages[0]["content"]]
    assert len(summaries) == 3 * 8 and len(judges) == 8  # 3 candidates x 8 agent turns, one judge call per turn
    assert all(
        r.messages[-1]["content"].startswith("Please summarize the given context") and r.temperature == 0.0
        for r in summaries
    )
    assert "fewer than 4096 tokens" in summaries[0].messages[0]["content"]
    assert ctx.vmeter.calls == len(summaries) + len(judges)  # the verifier's meter counts judge and summariser
    assert ctx.meter.calls == len(reqs) - ctx.vmeter.calls == 3 * 8  # the MAS's meter only the agents' samples


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_runs_end_to_end(strategy):
    ctx = _ctx(make_client("7"), "agent", "prm", strategy)
    assert answer_key(make_framework("aflow").solve(ctx)) == ("7",) and ctx.stats["fallbacks"] == 0


def test_reward_model_seam_and_judge_validation():
    rm = FunctionOutcomeScorer(lambda convs: [len(c[1]["content"]) for c in convs])
    assert OutcomeRewardModel(rm).rank("t", ["a", "ccc", "bb"]) == [1, 2, 0]
    with pytest.raises(VerifierError, match="returned 1 scores"):
        FunctionOutcomeScorer(lambda convs: [1.0]).score("t", ["a", "b"])
    bad = LLMJudge(ScriptedClient(responder=lambda req: "<ranking>1,1,2</ranking>"), Meter())
    with pytest.raises(VerifierError, match="not a permutation"):
        bad.rank("t", ["a", "b", "c"])


def test_broken_generated_code_is_a_scored_failure():
    hang = "```python\ndef forward(task):\n    while True:\n        pass\n```"
    ctx = _ctx(make_client("7", code="```python\nraise SystemExit(3)\n```"))
    assert make_framework("mas_zero").solve(ctx) == ""
    ok, msg = run_generated(_ctx(make_client("7")), 0, extract_code(hang), blocks=False, timeout_s=1)
    assert not ok and "timeout" in msg


@pytest.mark.parametrize(
    "level,strategy", [("none", "raw"), ("agent", "summary"), ("agent", "summary_current"), ("iteration", "summary")]
)
def test_identical_rerun_hits_the_cache_for_every_call(tmp_path, level, strategy):
    # replies depend on the request's seed and calls finish in random order: a seed taken from a shared
    # counter would give different requests on the rerun; seeds derived from the call's position do not
    from jaxlab.llm.cache import CachedClient

    inner = make_client("7", right_every=2, by_seed=True, jitter_s=0.003)
    for name in sorted(FRAMEWORKS):
        answers, counts = [], []
        for _ in range(2):
            cached = CachedClient(inner, tmp_path / name, max_concurrency=8)
            meter, vmeter = Meter(), Meter()
            ctx = MASContext(
                cached,
                TASK,
                make_verifier("judge_ranking", cached, vmeter),
                level,
                strategy,
                3,
                meter=meter,
                task_id="t0",
                framework=name,
                vmeter=vmeter,
            )
            answers.append(make_framework(name).solve(ctx))
            counts.append((cached.hits, cached.misses))
        assert counts[0][1] > 0, name
        assert counts[1] == (sum(counts[0]), 0), (name, counts)  # every request of the rerun hits, none is new
        assert answers[0] == answers[1]
        assert (vmeter.calls > 0) == (level != "none") and meter.calls > 0  # verifier calls metered apart


def test_seeds_depend_on_position_not_order():
    ctx = MASContext(make_client("7"), TASK, seed=3, task_id="t", framework="debate")
    assert ctx.position_seed("a", 0, 0) == MASContext(
        make_client("7"), TASK, seed=3, task_id="t", framework="debate"
    ).position_seed("a", 0, 0)
    assert len({ctx.position_seed("a", 0, i) for i in range(50)}) == 50
    assert ctx.position_seed("a", 0, 0) != MASContext(
        make_client("7"), TASK, seed=3, task_id="u", framework="debate"
    ).position_seed("a", 0, 0)
