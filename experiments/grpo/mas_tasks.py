"""MAS-Orchestra as a GRPO task: MASBench problems the orchestrator answers with a whole system.

A task's prompt is the seed's orchestrator request (``experiments.mas_orchestra.orchestrator``: the
format, the sub-agent catalogue, the problem); its completion is scored by
``experiments.grpo.rewards.orchestra``. Train and held-out problems come from disjoint generator
seeds (``experiments.masbench.generator``), so held-out numbers are on problems never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from experiments.grpo.evaluate import greedy_texts
from experiments.grpo.rewards.orchestra import OrchestraRewards, summarize
from experiments.mas_orchestra.orchestrator import orchestrator_request
from experiments.mas_orchestra.reward import orchestration_reward
from experiments.mas_orchestra.subagents import Settings
from experiments.masbench.generator import AXES, MAX_LEVEL, MIN_LEVEL, Problem
from experiments.masbench.generators import GENERATORS, generate_split
from jaxlab.config import ConfigError
from jaxlab.llm.factory import ClientConfig

HELDOUT_SEED_OFFSET = 7_919
"""Held-out problems use generator seed ``seed + 7919``: ids (and so problems) disjoint from training's."""


@dataclass(frozen=True)
class OrchestraSection:
    """The ``mas`` section of a GRPO config with ``task: mas_orchestra``."""

    axes: tuple[str, ...] = ("depth", "parallel")
    levels: tuple[int, ...] = (2,)
    train_per_level: int = 16
    heldout_per_level: int = 4
    seed: int = 0
    generator: str = "dag"
    """MASBench generator: ``dag`` or ``igsm`` (the authors' iGSM style)."""
    client: ClientConfig = field(default_factory=lambda: ClientConfig(kind="local", model="smollm2"))
    """The frozen sub-agents' client (``echo`` for wiring checks, ``local`` SmolLM2, ``http`` a served model)."""
    subagents: Settings = field(default_factory=lambda: Settings(sc_samples=3, debate_rounds=2, reflexion_rounds=2))
    subagent_max_tokens: int = 128
    max_systems: int = 4
    exec_weight: float = 0.1
    answer_weight: float = 0.9

    def __post_init__(self) -> None:
        bad = [a for a in self.axes if a not in AXES]
        if bad or not self.axes:
            raise ConfigError(f"mas.axes: expected a non-empty subset of {list(AXES)}, got {list(self.axes)}")
        if not self.levels or any(not MIN_LEVEL <= lv <= MAX_LEVEL for lv in self.levels):
            raise ConfigError(f"mas.levels: expected integers in [{MIN_LEVEL}, {MAX_LEVEL}], got {list(self.levels)}")
        if self.generator not in GENERATORS:
            raise ConfigError(f"mas.generator: expected one of {list(GENERATORS)}, got {self.generator!r}")
        if self.train_per_level < 1 or self.heldout_per_level < 1:
            raise ConfigError("mas.train_per_level / mas.heldout_per_level: expected >= 1")


@dataclass(frozen=True)
class OrchestraTask:
    problem: Problem

    @property
    def question(self) -> str:
        return self.problem.question

    @property
    def answer(self) -> str:
        return self.problem.gold

    def messages(self) -> list[dict]:
        req = orchestrator_request(self.problem.question, use_tools=False, temperature=0.0, max_tokens=1, seed=0)
        return list(req.messages)

    def fields(self) -> dict[str, Any]:
        return {"question": self.problem.question, "answers": list(self.problem.answers), "problem_id": self.problem.id}


def orchestra_tasks(split: str, mas: OrchestraSection) -> list[OrchestraTask]:
    if split not in ("train", "heldout"):
        raise ValueError(f"split: expected 'train' or 'heldout', got {split!r}")
    per, seed = (
        (mas.train_per_level, mas.seed) if split == "train" else (mas.heldout_per_level, mas.seed + HELDOUT_SEED_OFFSET)
    )
    return [OrchestraTask(p) for p in generate_split(mas.axes, mas.levels, per, seed, mas.generator)]


def orchestra_rewards(mas: OrchestraSection, client: Any = None, seed: int = 0) -> OrchestraRewards:
    """The reward functions bound to the sub-agent client (``client`` overrides ``mas.client``: tests)."""
    from jaxlab.llm.factory import make_client

    return OrchestraRewards(
        client or make_client(mas.client),
        mas.subagents,
        mas.subagent_max_tokens,
        seed,
        mas.exec_weight,
        mas.answer_weight,
        mas.max_systems,
    )


def evaluate_orchestrator(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[OrchestraTask],
    rewards: OrchestraRewards,
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    encode: Callable[[Any], list[int]] | None = None,
) -> dict[str, Any]:
    """Greedy systems for ``tasks``: how many parse, validate, execute and answer correctly, and the mean reward."""
    if not tasks:
        return {"n": 0}
    texts = greedy_texts(model, tokenizer, tasks, max_new_tokens=max_new_tokens, batch_size=batch_size, encode=encode)
    results = rewards.results(
        texts,
        [t.question for t in tasks],
        [list(t.problem.answers) for t in tasks],
        [f"eval:{t.problem.id}" for t in tasks],
    )
    reward = [orchestration_reward(r.success, r.correct, rewards.exec_weight, rewards.answer_weight) for r in results]
    return {
        "n": len(tasks),
        **summarize(results),
        "mean_reward": sum(reward) / len(reward),
        "examples": [
            {"id": t.problem.id, "stage": r.stage, "error": r.error[:200], "text": x[:400]}
            for t, r, x in list(zip(tasks, results, texts))[:2]
        ],
    }
