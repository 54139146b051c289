"""Turn a run's orbax checkpoint into a Hugging Face folder: ``jaxlab export RUN_DIR/checkpoints[/STEP] OUT``.

An orbax checkpoint holds arrays only. So that it can be read without the run's
config or the original model at hand, every training runner calls
:func:`save_model_spec` first: ``<run>/model_config.json`` (the jaxlab
``ModelConfig``) and ``<run>/tokenizer/`` (the tokenizer's files). The export
builds the model's structure from the spec without initialising weights,
restores the ``model`` item of the chosen step into it and writes it with
:func:`jaxlab.models.to_hf`, tokenizer and ``generation_config.json`` included.
A LoRA run checkpoints its adapters only: the export loads the run's base model
(``model`` in its ``config.yaml``) and writes the adapters merged into it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from jaxlab.config import to_dict
from jaxlab.models.config import ModelConfig
from jaxlab.models.decoder import DecoderLM

SPEC_FILE = "model_config.json"
TOKENIZER_DIR = "tokenizer"


def save_model_spec(run_dir: str | Path, config: ModelConfig, tokenizer: Any = None) -> None:
    """Write ``model_config.json`` (and ``tokenizer/`` when there is a Hugging Face tokenizer) under ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SPEC_FILE).write_text(json.dumps({"model_config": to_dict(config)}, indent=2))
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(run_dir / TOKENIZER_DIR))


def _locate(path: Path) -> tuple[Path, Path, int | None]:
    """``(run dir, checkpoints dir, step or None for the latest)`` from ``RUN/checkpoints`` or ``RUN/checkpoints/STEP``."""
    path = path.absolute()
    if path.name.isdigit() and path.is_dir():
        return path.parent.parent, path.parent, int(path.name)
    if (path / "checkpoints").is_dir():  # the run dir itself
        path = path / "checkpoints"
    return path.parent, path, None


def restore_model(checkpoint: str | Path) -> tuple[DecoderLM, Any, int]:
    """``(model, tokenizer or None, step)`` restored from a run's checkpoint (latest step unless one is named)."""
    import orbax.checkpoint as ocp

    run_dir, ckpt_dir, step = _locate(Path(checkpoint))
    spec = run_dir / SPEC_FILE
    if not spec.is_file():
        raise FileNotFoundError(
            f"export: {str(spec)!r} does not exist; the checkpoint's architecture is unknown (runs written "
            f"before jaxlab saved model_config.json cannot be exported this way)"
        )
    cfg = ModelConfig(**json.loads(spec.read_text())["model_config"])
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"export: no checkpoints directory at {str(ckpt_dir)!r}")
    with ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(create=False, read_only=True)) as mgr:
        steps = sorted(mgr.all_steps())
        step = steps[-1] if step is None and steps else step
        if step is None or step not in steps:
            raise FileNotFoundError(f"export: no checkpoint step {step} under {str(ckpt_dir)!r}; available: {steps}")
        lora = _lora_run(run_dir)
        base = None
        if lora is None:
            target = nnx.eval_shape(lambda: DecoderLM(cfg, rngs=nnx.Rngs(0)))
        else:  # the checkpoint holds the adapters; the frozen base is the run's own model source
            base, target = lora
        graphdef, params, rest = nnx.split(target, nnx.Param, ...)
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), {"params": params, "rest": rest}
        )
        restored = mgr.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(abstract)))
    model = nnx.merge(graphdef, restored.model["params"], restored.model["rest"])
    if base is not None:
        from jaxlab.transforms.lora import merged_model

        model = merged_model(base, model)
    tokenizer = None
    if (run_dir / TOKENIZER_DIR).is_dir():
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER_DIR))
    return model, tokenizer, step


def _lora_run(run_dir: Path) -> tuple[DecoderLM, Any] | None:
    """``(base model, fresh adapters)`` when the run trained LoRA adapters (its config has a ``lora`` section)."""
    import yaml

    config_file = run_dir / "config.yaml"
    raw = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    if not (raw or {}).get("lora"):
        return None
    from jaxlab.config import load
    from jaxlab.train.pretrain import ModelSection, load_model
    from jaxlab.transforms.lora import LoRAConfig, init_lora

    base, _ = load_model(load(ModelSection, data=raw.get("model") or {}))
    return base, init_lora(base, load(LoRAConfig, data=raw["lora"]))


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write checkpoint ``checkpoint`` as a Hugging Face folder at ``out_dir``; returns ``out_dir``."""
    from jaxlab.models.hf import to_hf

    model, tokenizer, step = restore_model(checkpoint)
    out = to_hf(model, out_dir, tokenizer=tokenizer)
    print(
        f"[export] step {step} -> {out}" + ("" if tokenizer is not None else " (no tokenizer in the run)"), flush=True
    )
    return out
