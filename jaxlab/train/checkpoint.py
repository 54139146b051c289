"""Orbax checkpoints of a training run: params, optimizer state, data iterator, step.

Layout: ``<dir>/<step>/{model,opt_state,meta}``; ``model`` holds the params and
any other module state, ``meta`` is JSON with the step, the grain iterator
state, caller extras and a fingerprint of every array. Why the extra care:

* **Never lose the last good checkpoint.** Orbax writes a step into a temporary
  directory and renames it only after every item is committed; old steps are
  garbage-collected (``keep``) only after a new one is finalized. A save that
  fails therefore leaves the previous steps untouched and is reported as a
  :class:`CheckpointError`. Non-finite parameters are refused before writing, so
  a diverged run cannot rotate good checkpoints out.
* **Fail fast.** A failed async save surfaces as a :class:`CheckpointError` at
  the next ``save``, ``should_save`` or ``wait``, within the step. The step
  directory is created on the calling thread: orbax's default creates it in the
  background and its writer threads wait for a "directory created" signal for
  up to 300 s, so a failed ``mkdir`` (disk full, permissions) left them blocked
  and kept the process from exiting for five minutes.
* **Never mix runs.** Saving a step that is already on disk is an error (it was
  written by another run), and so is finding checkpoints with ``resume=False``
  (:meth:`Checkpointer.resume_step`).
* **Detect corrupt or partial checkpoints.** Any orbax/tensorstore failure on
  restore (missing item, truncated chunk) and any fingerprint mismatch (bytes
  that decode but are wrong) raise :class:`CheckpointError` naming the step, the
  failing item or array, and the earlier steps one can fall back to.

The array fingerprint is a position-weighted sum of each array's raw bits modulo
2**32, computed on device under ``jit``: cheap next to the write itself, and
independent of sharding because integer sums are exactly associative. The meta
item (step, data-iterator position, extras and those array sums) carries a
SHA-256 of its canonical JSON, so a hand-edited data position is caught too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxlab.train.step import TrainState


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """The ``checkpoint`` section of a run config."""

    every_steps: int = 50
    """Save when ``step % every_steps == 0`` (and at the final step); 0 disables saving."""
    keep: int = 2
    """How many most recent checkpoints to keep on disk."""
    async_save: bool = True
    """Write in a background thread while training continues."""
    resume: bool = True
    """Resume from the latest checkpoint under ``<output_dir>/checkpoints`` if there is one."""

    def __post_init__(self) -> None:
        if self.every_steps < 0:
            raise ValueError(f"every_steps: expected >= 0 (0 disables), got {self.every_steps!r}")
        if self.keep < 1:
            raise ValueError(f"keep: expected >= 1, got {self.keep!r}")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or is corrupt/partial on restore."""


class Restored(NamedTuple):
    step: int
    state: TrainState
    rest: Any
    data_state: dict | None
    extra: dict


_BLOCK = 1 << 16
"""Elements per step of the fingerprint loop: its temporaries are this size, not the leaf's."""


def _weighted_sum(bits: jax.Array, start: jax.Array | int) -> jax.Array:
    idx = jnp.uint32(start) + jax.lax.iota(jnp.uint32, bits.size)
    return jnp.sum(bits.astype(jnp.uint32) * (idx % jnp.uint32(65521) + jnp.uint32(1)), dtype=jnp.uint32)


def _finite(seg: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(seg)) if jnp.issubdtype(seg.dtype, jnp.floating) else jnp.bool_(True)


@jax.jit
def _leaf_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sum_i bits_i * (i % 65521 + 1) mod 2**32, all finite)`` of one leaf, ``_BLOCK`` elements at a time.

    Why blocks: XLA:CPU materialises the weighted bits of a whole leaf before reducing them (its reduction
    is rewritten into a tree of reduce-windows), i.e. a uint32 temporary the size of the leaf (the SmolLM2
    embedding: 113 MB). A loop over fixed-size slices keeps every temporary at ``_BLOCK`` elements. The sum
    is the same (integer addition modulo 2**32 is associative) as in the checkpoints written before.
    """
    width = jnp.dtype(x.dtype).itemsize * 8
    if width not in (8, 16, 32):
        raise CheckpointError(f"cannot fingerprint dtype {x.dtype}")
    flat = x.reshape(-1)
    unsigned = jnp.dtype(f"uint{width}")
    full = flat.size // _BLOCK

    def body(i, carry):  # slice first, then reinterpret: a bitcast of the whole leaf would be a copy of it
        total, finite = carry
        seg = jax.lax.dynamic_slice(flat, (i * _BLOCK,), (_BLOCK,))
        bits = jax.lax.bitcast_convert_type(seg, unsigned)
        return total + _weighted_sum(bits, i.astype(jnp.uint32) * jnp.uint32(_BLOCK)), finite & _finite(seg)

    total, finite = jnp.uint32(0), jnp.bool_(True)
    if full:
        total, finite = jax.lax.fori_loop(0, full, body, (total, finite))
    tail = full * _BLOCK
    if tail < flat.size:
        total = total + _weighted_sum(jax.lax.bitcast_convert_type(flat[tail:], unsigned), tail % 2**32)
        finite = finite & _finite(flat[tail:])
    return total, finite


def fingerprint(tree: Any) -> tuple[dict[str, int], bool]:
    """``({leaf path: checksum}, all floating leaves finite)`` of an array pytree.

    One small jitted program per leaf (compiled once per shape and dtype), not one over the whole tree,
    whose temporaries were the size of the state itself (a 0.54 GB state grew the process by 0.83 GB;
    issue 15); inside a leaf the loop of :func:`_leaf_stats` keeps them at ``_BLOCK`` elements.
    """
    prints, finite = {}, True
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        total, ok = _leaf_stats(leaf)
        prints[jax.tree_util.keystr(path)] = int(total)
        finite = finite and bool(ok)
    return prints, finite


def _meta_digest(body: dict) -> str:
    """SHA-256 of the canonical JSON of the meta item (what a JSON round trip gives back)."""
    canonical = json.loads(json.dumps(body, allow_nan=True))  # int keys -> str, tuples -> lists
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Save every N steps, keep the last K, restore exactly with validation."""

    def __init__(self, directory: str | Path, cfg: CheckpointConfig):
        self.directory = Path(directory).absolute()
        self.cfg = cfg
        options = ocp.CheckpointManagerOptions(
            max_to_keep=cfg.keep,
            enable_async_checkpointing=cfg.async_save,
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
            cleanup_tmp_directories=True,
            create=True,
        )
        self._mgr = ocp.CheckpointManager(self.directory, options=options)

    # ------------------------------------------------------------------ save
    def should_save(self, step: int, final: bool = False) -> bool:
        """Whether to save at ``step``; first raises the error of a failed async save, if any.

        Training loops call this every step, so a background write that failed
        stops the run at the next step instead of at the next save.
        """
        self._raise_pending_error()
        if self.cfg.every_steps == 0:
            return False
        return final or step % self.cfg.every_steps == 0

    def save(
        self,
        step: int,
        state: TrainState,
        rest: Any,
        data_state: dict | None = None,
        extra: dict | None = None,
    ) -> None:
        """Write checkpoint ``step`` (asynchronously if configured)."""
        self._raise_pending_error()
        if step in self._mgr.all_steps():
            raise CheckpointError(
                f"checkpoint step {step} already exists under {self.directory} (written by another run, or "
                f"this one saved it twice); refusing to skip or replace it"
            )
        arrays = {"params": state.params, "opt_state": state.opt_state, "rest": rest}
        prints, finite = fingerprint(arrays)
        if not finite:
            raise CheckpointError(
                f"refusing to save step {step}: parameters or optimizer state contain NaN/inf; "
                f"the last good checkpoint ({self.latest_step()}) is kept"
            )
        try:
            meta = {"step": step, "data_state": data_state, "extra": extra or {}, "fingerprint": prints}
            meta["meta_fingerprint"] = _meta_digest(meta)
            self._mgr.save(
                step,
                args=ocp.args.Composite(
                    model=ocp.args.StandardSave({"params": state.params, "rest": rest}),
                    opt_state=ocp.args.StandardSave(state.opt_state),
                    meta=ocp.args.JsonSave(meta),
                ),
                force=True,
            )
        except Exception as exc:
            raise self._save_error(step, exc) from exc

    def wait(self) -> None:
        """Block until pending async saves are committed; raise if one failed."""
        try:
            self._mgr.wait_until_finished()
        except Exception as exc:
            raise self._save_error(None, exc) from exc

    def _raise_pending_error(self) -> None:
        """Raise the error of a finished async save; never blocks on one still writing.

        ``CheckpointManager.check_for_errors`` does not serve: the manager's own
        finalize thread consumes the writer's exception and hands it on only
        through ``wait_until_finished``, which is immediate when no save is in progress.
        """
        if self._mgr.is_saving_in_progress():
            return
        self.wait()

    def _save_error(self, step: int | None, exc: Exception) -> CheckpointError:
        which = f"step {step}" if step is not None else "a pending async save"
        return CheckpointError(
            f"saving checkpoint {which} under {self.directory} failed ({type(exc).__name__}: {exc}); "
            f"earlier checkpoints are untouched, latest complete step: {self.latest_step()}"
        )

    # ------------------------------------------------------------------ restore
    def all_steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def resume_step(self) -> int | None:
        """The step to resume from: the latest one, or ``None`` when there are no checkpoints.

        With ``resume=False`` existing checkpoints are an error rather than
        something to train past: their steps would collide with this run's.
        """
        latest = self.latest_step()
        if latest is not None and not self.cfg.resume:
            raise CheckpointError(
                f"checkpoint.resume is false but {self.directory} holds checkpoints {self.all_steps()} of an "
                f"earlier run; resume it (checkpoint.resume=true) or move those checkpoints away"
            )
        return latest

    def restore(self, state_like: TrainState, rest_like: Any, step: int | None = None) -> Restored:
        """Restore ``step`` (default: latest) into the structure/sharding of the ``*_like`` trees.

        Raises :class:`CheckpointError` if the step does not exist, cannot be
        read, or does not match its recorded fingerprint.
        """
        steps = self.all_steps()
        step = steps[-1] if step is None and steps else step
        if step is None or step not in steps:
            raise CheckpointError(f"no checkpoint step {step} under {self.directory}; available: {steps}")
        earlier = [s for s in steps if s < step]
        hint = (
            f"earlier steps available: {earlier} (delete {self.directory / str(step)} to resume from {earlier[-1]})"
            if earlier
            else "no earlier checkpoint is available"
        )
        try:
            out = self._mgr.restore(
                step,
                args=ocp.args.Composite(
                    model=ocp.args.StandardRestore(_abstract({"params": state_like.params, "rest": rest_like})),
                    opt_state=ocp.args.StandardRestore(_abstract(state_like.opt_state)),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except Exception as exc:
            raise CheckpointError(
                f"checkpoint step {step} at {self.directory / str(step)} is corrupt or partial "
                f"({type(exc).__name__}: {str(exc)[:500]}); {hint}"
            ) from exc
        meta = out.meta
        required = {"fingerprint", "meta_fingerprint"}
        if not isinstance(meta, dict) or meta.get("step") != step or not required <= set(meta):
            raise CheckpointError(
                f"checkpoint step {step}: meta item is missing or malformed (expected the step, "
                f"'fingerprint' and 'meta_fingerprint'); {hint}"
            )
        body = {k: v for k, v in meta.items() if k != "meta_fingerprint"}
        if _meta_digest(body) != meta["meta_fingerprint"]:
            raise CheckpointError(
                f"checkpoint step {step} at {self.directory / str(step)}: its meta item (step, data-iterator "
                f"position, extras, array fingerprints) does not match its saved fingerprint: edited or corrupt; "
                f"{hint}"
            )
        params, rest = out.model["params"], out.model["rest"]
        arrays = {"params": params, "opt_state": out.opt_state, "rest": rest}
        got, _ = fingerprint(arrays)
        want = meta["fingerprint"]
        bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        if bad:
            raise CheckpointError(
                f"checkpoint step {step} at {self.directory / str(step)} is corrupt: "
                f"{len(bad)} array(s) do not match their saved fingerprint, first {bad[0]}; {hint}"
            )
        return Restored(step, TrainState(params, out.opt_state), rest, meta["data_state"], meta["extra"])

    def close(self) -> None:
        self.wait()
        self._mgr.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
