"""Expert parallelism: routed (clamped) SwiGLU experts, with optional per-expert biases, under
standard EP or LLEP (shard_map over `expert`)."""

from jaxlab.parallel.expert_parallel import (
    EP_MODES,
    EPConfig,
    EPStats,
    llep_plan_arrays,
    raise_on_overflow,
    routed_experts,
)
from jaxlab.parallel.planner import ExpertPlan, pair_counts, plan_llep, plan_standard
from jaxlab.parallel.routed_ffn import ExpertActivation, ExpertBiases, clamped_swiglu, expert_ffn, routed_ffn_reference

__all__ = [
    "EP_MODES",
    "EPConfig",
    "EPStats",
    "ExpertActivation",
    "ExpertBiases",
    "ExpertPlan",
    "clamped_swiglu",
    "expert_ffn",
    "llep_plan_arrays",
    "pair_counts",
    "plan_llep",
    "plan_standard",
    "raise_on_overflow",
    "routed_experts",
    "routed_ffn_reference",
]
