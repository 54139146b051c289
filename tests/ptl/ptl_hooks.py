"""A deterministic RL-style tuner for the loop tests: shifts every parameter (pruned ones too)."""

import jax
from flax import nnx

CALLS: list = []
FAIL_AT: dict = {"stage": None}


def factory(cfg, **context):
    def tune(model, stage, budget):
        CALLS.append((stage.track, stage.index, budget.steps))
        if FAIL_AT["stage"] == (stage.track, stage.index):
            raise RuntimeError(f"simulated crash in {stage.track} stage {stage.index}")
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return nnx.merge(graphdef, jax.tree.map(lambda p: p + 0.01, params), rest)

    return tune
