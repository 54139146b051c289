"""The verifier paradigms as distinct mechanisms: scripted models on which ORM, PRM and the judges disagree."""

import re

import pytest

from experiments.mas_prove.core import Meter, VerifierError
from experiments.mas_prove.prompts import fare_system, fare_user
from experiments.mas_prove.verifiers import (
    STEP_SEPARATOR,
    ChatStepScorer,
    FAREJudge,
    FunctionStepScorer,
    LLMJudge,
    OutcomeRewardModel,
    ProcessRewardModel,
    aggregate,
    make_verifier,
    prm_messages,
    split_steps,
)
from jaxlab.llm import ScriptedClient

TASK = "Compute (2 + 3) * 4."
# A: a wrong middle step that happens to land on the right number (the outcome looks fine, the process does not)
LUCKY = "2 + 3 = 6.\n\n6 * 4 = 20, so the answer is \\boxed{20}."
# B: every step right, stated with less confidence
SOUND = "2 + 3 = 5.\n\nThen 5 * 4 = 20.\n\nI think the answer is \\boxed{20}."
WRONG = "2 + 3 = 5.\n\n5 * 4 = 24, so \\boxed{24}."


def _model(req):
    """One scripted model playing every verifier; each role looks only at what that paradigm is shown."""
    system, prompt = req.messages[0]["content"], req.messages[-1]["content"]
    if "outcome reward model" in system:  # the outcome: confident right answers score highest
        resp = prompt.split("Response:\n", 1)[1]
        return "<reward>" + ("0.1" if "24" in resp else "0.95" if "so the answer" in resp else "0.8") + "</reward>"
    if "process reward model" in system:  # each step on its own merits
        steps = prompt.split("steps):\n", 1)[1].split(STEP_SEPARATOR)[:-1]
        return (
            "<step_rewards>"
            + ", ".join("0.05" if ("= 6" in s or "= 24" in s) else "0.9" for s in steps)
            + "</step_rewards>"
        )
    if "<ranking>" in system:
        cands = re.split(r"<\|Candidate \d+ Response\|>", prompt)[1:]
        order = sorted(range(len(cands)), key=lambda i: ("= 6" in cands[i]) + 2 * ("24" in cands[i]))
        return "Candidate with 2+3=6 is flawed.\n<ranking>" + ",".join(str(i + 1) for i in order) + "</ranking>"
    if "Verdict:" in system:
        cands = re.split(r"\[The Start of Assistant [A-Z]'s Answer\]", prompt)[1:]
        best = next(i for i, c in enumerate(cands) if "= 5" in c and "24" not in c)
        return f"Explanation: [A] slips in its first step.\nVerdict: [{chr(65 + best)}]"
    raise AssertionError(f"unexpected request: {system[:60]}")


def _verifier(kind, meter=None):
    return make_verifier(kind, ScriptedClient(responder=_model), meter or Meter())


def test_orm_scores_the_outcome_and_prm_the_steps_so_they_disagree():
    cands = [LUCKY, SOUND, WRONG]
    assert _verifier("orm").rank(TASK, cands) == [0, 1, 2]  # lucky outcome looks best
    prm = _verifier("prm")
    assert prm.rank(TASK, cands) == [1, 0, 2]  # the wrong step sinks the lucky one
    assert [len(r) for r in prm.last_step_rewards] == [2, 3, 2]  # one reward per step, at each separator
    assert prm.last_step_rewards[0] == [0.05, 0.9]


def test_prm_without_step_split_is_the_authors_single_separator():
    seen = []

    def fn(messages):
        seen.append(messages)
        return [0.5] * messages[-1]["content"].count(STEP_SEPARATOR)

    prm = ProcessRewardModel(FunctionStepScorer(fn), split=False)
    prm.rank(TASK, [SOUND, LUCKY])
    assert all(m[-1]["content"].count(STEP_SEPARATOR) == 1 and m[-1]["content"].endswith(STEP_SEPARATOR) for m in seen)
    assert seen[0][0]["content"].startswith("Please reason step by step") and seen[0][1]["content"] == TASK
    assert prm_messages("q", ["a", "b"])[-1]["content"] == f"a{STEP_SEPARATOR}b{STEP_SEPARATOR}"


def test_judges_rank_the_sound_solution_first():
    cands = [LUCKY, WRONG, SOUND]
    assert _verifier("judge_ranking").rank(TASK, cands) == [2, 0, 1]
    assert _verifier("fare").rank(TASK, cands) == [2, 0, 1]  # the winner, then the others in order


def test_judge_prompt_is_the_authors():
    client = ScriptedClient(responder=_model)
    LLMJudge(client, Meter()).rank(TASK, [LUCKY, SOUND])
    system, user = (m["content"] for m in client.requests[0].messages)
    # server_judge.py: PROMPT_RANKING after .strip() keeps its 4-space indents
    assert user.startswith(
        f"<|User Prompt|>\n    {TASK}\n\n    <|Candidate 1 Response|>\n{LUCKY}\n<|End of Candidate 1|>"
    )
    assert user.endswith("<|Candidate 2 Response|>\n" + SOUND + "\n<|End of Candidate 2|>")
    assert system.startswith(
        "Please act as an impartial judge and evaluate the quality of multiple responses provided "
        "by AI assistants to the user prompt displayed below."
    )
    assert system.endswith("Please enclose your ranking in <ranking> and </ranking> tags.")
    assert "- Correctness of the final answer\n- Quality and clarity of reasoning\n" in system


def test_fare_prompt_is_the_authors_for_three_and_generalises():
    three = fare_system(3)
    assert three.startswith(
        "Please act as an impartial judge and evaluate the quality of the responses provided by "
        "three AI assistants to the user prompt displayed below. You will be given assistant A's "
        "answer, assistant B's answer, and assistant C's answer."
    )
    assert (
        "If assistant A is better, output [A]. If assistant B is better, output [B]. If assistant C is better, "
        "output [C].\n"
    ) in three and three.endswith("Explanation: Your explanation here\nVerdict: Your final verdict")
    assert "two AI assistants" in fare_system(2) and "assistant A's answer and assistant B's answer" in fare_system(2)
    assert "output [D]." in fare_system(4) and "[E]" not in fare_system(4)
    client = ScriptedClient(responder=_model)
    FAREJudge(client, Meter()).rank(TASK, [LUCKY, SOUND, WRONG])
    assert client.requests[0].messages[0]["content"] == three
    assert client.requests[0].messages[1]["content"] == fare_user(TASK, [LUCKY, SOUND, WRONG]) and fare_user(
        "q", ["a", "b"]
    ) == (
        "[User Question]\nq\n\n[The Start of Assistant A's Answer]\na\n[The End of "
        "Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\nb\n[The End of "
        "Assistant B's Answer]"
    )


@pytest.mark.parametrize(
    "reply,want",
    [
        ("Explanation: [A] slips.\nVerdict: [C]", 2),  # the verdict line wins over letters in the explanation
        ("Verdict: [B] (not [A])", 1),  # first letter after the verdict
        ("I pick [C] over [A].", 2),  # no verdict line: the first letter anywhere (the authors' re.search)
    ],
)
def test_fare_reads_the_verdict(reply, want):
    assert FAREJudge(ScriptedClient(responder=lambda r: reply), Meter()).rank(TASK, [LUCKY, SOUND, WRONG])[0] == want


@pytest.mark.parametrize("reply,match", [("Explanation: none", "no verdict"), ("Verdict: [D]", "no verdict")])
def test_fare_without_a_verdict_is_a_verifier_error(reply, match):
    with pytest.raises(VerifierError, match=match):
        FAREJudge(ScriptedClient(responder=lambda r: reply), Meter()).rank(TASK, [LUCKY, SOUND, WRONG])


def test_step_scorer_checks_one_reward_per_step_and_aggregates():
    bad = ChatStepScorer(ScriptedClient(responder=lambda r: "<step_rewards>0.5</step_rewards>"), Meter())
    with pytest.raises(VerifierError, match="1 values for 2 steps"):
        bad.step_rewards(TASK, ["a", "b"])
    assert split_steps("a\n\n  \nb\n\nc") == ["a", "b", "c"] and split_steps("one") == ["one"]
    r = [0.9, 0.2, 0.8]
    assert aggregate(r, "min") == 0.2 and aggregate(r, "last") == 0.8
    assert aggregate(r, "prod") == pytest.approx(0.144) and aggregate(r, "mean") == pytest.approx(1.9 / 3)


def test_verifier_calls_book_on_the_verifier_meter():
    meter = Meter()
    OutcomeRewardModel(_verifier("orm", meter).scorer).rank(TASK, [LUCKY, SOUND])
    assert meter.calls == 2 and meter.usage.total_tokens > 0
