"""The training loop: jitted steps, progress bar, eval, metrics, checkpoint/resume.

Resuming restores params, optimizer state, the data iterator and the step
from the latest checkpoint, so a run killed at any point and started again
with the same config computes bit-identical losses from the checkpointed step
on (XLA on a fixed backend is deterministic for a fixed program).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from jaxlab.models.config import ModelConfig
from jaxlab.train import memory, perf
from jaxlab.train.checkpoint import Checkpointer
from jaxlab.train.data import set_iterator_state
from jaxlab.train.metrics import MetricsWriter
from jaxlab.train.optim import OptimConfig, make_optimizer, make_schedule
from jaxlab.train.shards import global_data_state, local_data_state
from jaxlab.train.step import LossFn, TrainState, copy_shared, make_train_step, split_model

EvalFn = Callable[[nnx.GraphDef, nnx.State, nnx.State], Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of a run config."""

    steps: int = 100
    """Total optimizer updates; a resumed run continues up to this step."""
    log_every: int = 1
    """Fetch and record train metrics every this many steps (a host sync each time)."""
    eval_every: int = 0
    """Run the eval function every this many steps; 0 = never during training."""
    progress: bool = True
    """Show a tqdm progress bar."""
    peak_tflops_per_device: float | None = None
    """Peak TFLOP/s of one device for the logged MFU; None: looked up from the device kind (unknown: no MFU)."""
    profile_steps: tuple[int, int] | None = None
    """``[start, stop]``: record a ``jax.profiler`` trace of steps start..stop (inclusive) under
    ``RUN_DIR/profile`` (open it with TensorBoard's profile plugin, Perfetto or XProf); None: no trace."""

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("log_every", 1), ("eval_every", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {getattr(self, name)!r}")
        if self.profile_steps is not None:
            span = tuple(self.profile_steps)
            if len(span) != 2 or not 1 <= span[0] <= span[1]:
                raise ValueError(f"profile_steps: expected [start, stop] with 1 <= start <= stop, got {span!r}")
            object.__setattr__(self, "profile_steps", span)


@dataclasses.dataclass
class FitResult:
    graphdef: nnx.GraphDef
    state: TrainState
    rest: nnx.State
    step: int
    resumed_from: int | None
    history: list[dict]
    """Train/eval records produced by *this* call (not those before a resume)."""

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.state.params, self.rest)


def _placer(mesh) -> Callable[[Mapping[str, Any]], dict[str, jax.Array]]:
    """Host batches -> arrays; on a mesh, this process's rows become its shards of the global batch.

    Every process passes only the rows it read (its data shards); the global
    batch is ``process_count`` times as long, assembled without any copy between
    hosts by ``jax.make_array_from_process_local_data``.
    """
    if mesh is None:
        return lambda batch: {k: jnp.asarray(v) for k, v in batch.items()}
    from jaxlab.sharding import batch_sharding

    def place(batch: Mapping[str, Any]) -> dict[str, jax.Array]:
        out = {}
        for key, value in batch.items():
            value = np.asarray(value)
            global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
            sharding = batch_sharding(mesh, value.ndim, batch_size=global_shape[0])
            if jax.process_count() > 1 and sharding.spec[0] is None:
                raise ValueError(
                    f"batch[{key!r}]: a global batch of {global_shape[0]} rows cannot be split over the "
                    f"mesh's data-parallel axes {dict(mesh.shape)}; make the batch size a multiple of "
                    f"mesh.data * mesh.fsdp * mesh.expert"
                )
            out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
        return out

    return place


def fit(
    model: nnx.Module,
    data: Iterable[Mapping[str, Any]],
    optim_cfg: OptimConfig,
    train_cfg: TrainConfig,
    *,
    checkpointer: Checkpointer | None = None,
    metrics: MetricsWriter | None = None,
    eval_fn: EvalFn | None = None,
    mesh: Any = None,
    on_step: Callable[[int, dict], None] | None = None,
    tx: optax.GradientTransformation | None = None,
    loss_fn: LossFn | None = None,
    loss_context: Any = None,
    profile_dir: str | Path | None = None,
    donate_model: bool = False,
) -> FitResult:
    """Train ``model`` on ``data`` (a grain dataset or iterator with get/set_state).

    ``mesh`` (from ``jaxlab.sharding.make_mesh``) shards params by their logical
    axes and batches over the data axes; ``None`` runs on the default device.
    ``on_step(step, record)`` is called after every step (after any checkpoint).
    ``tx`` replaces ``make_optimizer(optim_cfg)`` (e.g. wrapped to keep pruned weights
    at zero); ``optim_cfg`` still gives the logged learning-rate schedule and accumulation.
    ``loss_fn`` (see :data:`jaxlab.train.step.LossFn`) replaces the causal-LM loss; with
    ``loss_context`` (a pytree of arrays, e.g. a frozen teacher's state) the step's ``rest``
    argument is ``(rest, loss_context)``: traced, never differentiated, placed on the mesh, and
    not checkpointed (the caller rebuilds it on resume).
    ``profile_dir`` is where ``train_cfg.profile_steps`` writes its trace (default: ``profile/`` next to
    the metrics).
    ``donate_model=True`` hands ``model``'s parameters to the trainer: the first step reuses their buffers
    for the new weights (one copy of the weights in memory, not two) and ``model`` must not be used
    afterwards (its parameter arrays are deleted). Leaves also held by ``rest`` or ``loss_context`` (a teacher
    sharing the embeddings, say) are copied first, so donation never deletes an array the step still reads.
    ``False``: the step trains a private copy and ``model`` stays usable.
    """
    profiler = _Profiler(
        train_cfg.profile_steps,
        profile_dir if profile_dir is not None else (metrics.directory / "profile" if metrics is not None else None),
    )
    graphdef, params, rest = split_model(model)
    callers = params
    tx = make_optimizer(optim_cfg) if tx is None else tx
    if mesh is not None:
        from jaxlab.sharding import init_on_mesh, shard_state

        params, rest = shard_state(params, mesh), shard_state(rest, mesh)
    # The step donates the params it is given (one copy of params + optimizer state per step, not two): they
    # must be arrays nobody else reads. The caller's own ones only when it donates the model; never ones that
    # ``rest`` or the loss context (a teacher) hold too.
    params = (
        copy_shared(params, rest, loss_context) if donate_model else copy_shared(params, callers, rest, loss_context)
    )
    if mesh is not None:
        # Every optimizer leaf on the mesh too, so restore targets and steps are mesh-consistent.
        state = TrainState(params, init_on_mesh(tx.init, params, mesh=mesh))
    else:
        state = TrainState(params, jax.jit(tx.init)(params))
    data_iter = data if hasattr(data, "set_state") else iter(data)

    start, resumed_from = 0, None
    if checkpointer is not None and checkpointer.resume_step() is not None:
        restored = checkpointer.restore(state, rest)
        state, rest, start = restored.state, restored.rest, restored.step
        if restored.data_state is not None:
            set_iterator_state(data_iter, local_data_state(restored.data_state))
        resumed_from = start
    if start >= train_cfg.steps:
        return FitResult(graphdef, state, rest, start, resumed_from, [])

    # On CPU a device array *is* host memory that an async checkpoint may still be reading, so there a save
    # is waited for before the next step donates the state it wrote.
    on_cpu = jax.default_backend() == "cpu"
    step_fn = make_train_step(graphdef, tx, optim_cfg.grad_accum_steps, donate=True, loss_fn=loss_fn)
    if loss_context is not None and mesh is not None:
        from jaxlab.sharding import shard_state

        loss_context = shard_state(loss_context, mesh)
    step_rest = (lambda r: r) if loss_context is None else (lambda r: (r, loss_context))
    schedule = jax.jit(make_schedule(optim_cfg))  # one compile, not one per eager op
    place = _placer(mesh)
    if mesh is not None:
        from jaxlab.sharding import activation_sharding

        # Only read while tracing: pins activations to the mesh inside the jitted step.
        sharding_ctx = lambda: activation_sharding(mesh)  # noqa: E731
    else:
        sharding_ctx = contextlib.nullcontext
    flops_per_token = None
    if isinstance(getattr(model, "config", None), ModelConfig):
        flops_per_token = lambda seq: perf.train_flops_per_token(model.config, seq)  # noqa: E731
    peak = perf.peak_flops(train_cfg.peak_tflops_per_device)
    compiled: dict = {}
    last = None
    history: list[dict] = []
    bar = tqdm(
        total=train_cfg.steps,
        initial=start,
        disable=not train_cfg.progress or jax.process_index() != 0,
        desc="train",
        unit="step",
    )
    try:
        for step in range(start + 1, train_cfg.steps + 1):
            try:
                batch = next(data_iter)
            except StopIteration:
                raise RuntimeError(
                    f"data ran out at step {step} of {train_cfg.steps}; use a repeating dataset "
                    f"(num_epochs=None) or lower train.steps"
                ) from None
            placed = place(batch)
            profiler.before(step)
            first = step == start + 1
            with memory.phase("train: compile + first step" if first else "train: steps"):
                with sharding_ctx():
                    shape = tuple((k, v.shape, v.dtype) for k, v in sorted(placed.items()))
                    if shape not in compiled:  # compile explicitly: the memory report comes from this executable
                        step_fn(state, step_rest(rest), placed, check_only=True)
                        compiled[shape] = step_fn.jitted.lower(state, step_rest(rest), placed).compile()
                        if last is None:
                            _report_memory(compiled[shape])
                        last = (step - 1, time.perf_counter())  # compile time is not step time
                    state, out = compiled[shape](state, step_rest(rest), placed)
                if first:  # its memory belongs to this phase, not to whichever one waits for it next
                    jax.block_until_ready(out)
                profiler.after(step, out)
                record: dict = {}
                if step % train_cfg.log_every == 0 or step == train_cfg.steps:
                    record = {k: float(v) for k, v in jax.device_get(out).items()}
                    now = time.perf_counter()
                    b, seq = placed["input_ids"].shape
                    record.update(
                        perf.step_record(
                            (now - last[1]) / (step - last[0]),
                            b * seq,
                            flops_per_token(seq) if flops_per_token else None,
                            peak,
                        )
                    )
                    last = (step, now)
                    record["lr"] = float(schedule(step - 1))  # lr used by update `step`
                    _log(metrics, history, step, "train", record)
                    postfix = dict(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                    if "mfu" in record:
                        postfix["mfu"] = f"{record['mfu']:.1%}"
                    bar.set_postfix(refresh=False, **postfix)
            if eval_fn is not None and train_cfg.eval_every and step % train_cfg.eval_every == 0:
                with memory.phase("eval"):
                    _log(metrics, history, step, "eval", dict(eval_fn(graphdef, state.params, rest)))
            if checkpointer is not None and checkpointer.should_save(step, final=step == train_cfg.steps):
                with memory.phase("checkpoint save"):
                    checkpointer.save(step, state, rest, data_state=global_data_state(data_iter.get_state()))
                    if on_cpu:
                        checkpointer.wait()
            bar.update(1)
            if on_step is not None:
                on_step(step, record)
    finally:
        profiler.close()
        bar.close()
        if checkpointer is not None:
            checkpointer.wait()
    return FitResult(graphdef, state, rest, train_cfg.steps, resumed_from, history)


class _Profiler:
    """Starts a ``jax.profiler`` trace before step ``start`` and stops it once step ``stop`` has finished.

    Why wait on the step's outputs: dispatch is asynchronous, so without it the
    trace would stop before the device work of the last traced step ran.
    """

    def __init__(self, span: tuple[int, int] | None, directory: str | Path | None):
        if span is not None and directory is None:
            raise ValueError(
                "train.profile_steps: no directory to write the trace to (pass fit(profile_dir=...) or a MetricsWriter)"
            )
        self.span, self.directory, self.active = span, None if directory is None else Path(directory), False

    def before(self, step: int) -> None:
        if self.span is not None and step == self.span[0]:
            self.directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.directory))
            self.active = True

    def after(self, step: int, out: Any) -> None:
        if self.active and step == self.span[1]:
            jax.block_until_ready(out)
            self.close()

    def close(self) -> None:
        if self.active:
            self.active = False
            jax.profiler.stop_trace()


def _report_memory(compiled: Any) -> None:
    if jax.process_index() == 0:
        print(f"[train] {perf.format_memory(perf.memory_report(compiled))}", flush=True)


def _log(metrics: MetricsWriter | None, history: list[dict], step: int, split: str, values: dict) -> None:
    history.append({"step": step, "split": split, **values})
    if metrics is not None:
        metrics.write(step, split, values)
