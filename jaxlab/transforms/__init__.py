"""Pure transforms over a decoder's parameter pytree: masks, importance scores, compaction, grad masks."""

from jaxlab.transforms.compact import CompactionError, compact, compact_config, compact_params, param_count
from jaxlab.transforms.grad_mask import mask_gradients, masked_optimizer
from jaxlab.transforms.importance import (
    HEAD_CRITERIA,
    NEURON_CRITERIA,
    head_scores,
    kv_head_scores,
    mlp_scores,
    ptl_candidates,
    ptl_scores,
    ptl_seed_exact_scores,
    random_scores,
)
from jaxlab.transforms.layer_importance import LAYER_CRITERIA, block_influence, layer_scores, skip_loss
from jaxlab.transforms.language_neurons import (
    LanguageSets,
    activation_probabilities,
    detector_overlap,
    jaccard,
    lape_detect,
    plnd_detect,
    plnd_sets,
)
from jaxlab.transforms.masks import Masks, apply_masks, combine, full_masks, kept, prune_lowest
from jaxlab.transforms.neuron_masks import (
    NeuronMasks,
    apply_neuron_masks,
    deactivation_masks,
    random_control,
    selection_masks,
    to_ptl_masks,
)
from jaxlab.transforms.neuron_stats import (
    activation_probability,
    batch_neuron_stats,
    collect_neuron_stats,
    sample_batches,
)
from jaxlab.transforms.neuron_store import NeuronStore, collect_to_store
from jaxlab.transforms.neuron_train import mask_to_selected, neuron_optimizer, trainable_mask

CRITERIA = {
    "mlp": NEURON_CRITERIA + ("random",),
    "heads": HEAD_CRITERIA + ("random",),
    "kv_heads": HEAD_CRITERIA + ("random",),
    "layers": LAYER_CRITERIA + ("random",),
}


def unit_scores(
    model_or_split,
    unit: str,
    criterion: str,
    calib=(),
    *,
    masks: Masks | None = None,
    english=(),
    top_frac: float = 0.8,
    signed: bool = False,
    select: str = "ranked",
    n_remove: int | None = None,
    seed: int = 0,
):
    """Scores for ``unit`` (``mlp`` | ``heads`` | ``kv_heads`` | ``layers``) lining up with ``getattr(masks, unit)``.

    ``random`` needs no data (``seed`` picks the permutation); ``select`` / ``n_remove`` go to ``ptl``.
    """
    if unit not in CRITERIA:
        raise ValueError(f"unit: expected one of {list(CRITERIA)}, got {unit!r}")
    if criterion not in CRITERIA[unit]:
        raise ValueError(f"criterion: {criterion!r} does not score {unit}; expected one of {list(CRITERIA[unit])}")
    if criterion == "random":
        if masks is None:
            from flax import nnx

            from jaxlab.transforms.stats import as_split

            masks = full_masks(nnx.merge(*as_split(model_or_split)).config)
        if unit == "layers":
            return random_scores([len(masks.layers)], seed)[0]
        return random_scores([len(m) for m in getattr(masks, unit)], seed)
    if unit == "mlp":
        keep = masks.mlp if masks is not None else None
        return mlp_scores(
            model_or_split,
            criterion,
            calib,
            english=english,
            keep=keep,
            top_frac=top_frac,
            signed=signed,
            select=select,
            n_remove=n_remove,
        )
    if unit == "heads":
        return head_scores(model_or_split, criterion, calib)
    if unit == "kv_heads":
        return kv_head_scores(model_or_split, criterion, calib)
    return layer_scores(model_or_split, criterion, calib, masks)


__all__ = [
    "Masks",
    "full_masks",
    "apply_masks",
    "combine",
    "prune_lowest",
    "kept",
    "compact",
    "compact_config",
    "compact_params",
    "param_count",
    "CompactionError",
    "mask_gradients",
    "masked_optimizer",
    "mlp_scores",
    "head_scores",
    "kv_head_scores",
    "ptl_scores",
    "ptl_candidates",
    "ptl_seed_exact_scores",
    "random_scores",
    "block_influence",
    "skip_loss",
    "layer_scores",
    "unit_scores",
    "CRITERIA",
    "NEURON_CRITERIA",
    "HEAD_CRITERIA",
    "LAYER_CRITERIA",
    # language neurons (PLND / LAPE)
    "batch_neuron_stats",
    "collect_neuron_stats",
    "sample_batches",
    "activation_probability",
    "activation_probabilities",
    "NeuronStore",
    "collect_to_store",
    "LanguageSets",
    "plnd_sets",
    "plnd_detect",
    "lape_detect",
    "jaccard",
    "detector_overlap",
    "NeuronMasks",
    "selection_masks",
    "deactivation_masks",
    "apply_neuron_masks",
    "to_ptl_masks",
    "random_control",
    "trainable_mask",
    "mask_to_selected",
    "neuron_optimizer",
]
