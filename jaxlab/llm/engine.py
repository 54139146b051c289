"""Batching generation engine behind ``jaxlab serve``: many HTTP requests, one jitted batch.

A single worker thread owns the model.  It takes the oldest waiting job, then
every other job already queued (up to ``max_batch`` rows; a request with ``n``
samples is ``n`` rows), pads them into one batch and decodes it token by token,
streaming each row's text out as it grows.  Batching is per batch, not
continuous: the decoder's KV cache has one write index for all rows, so a
request that arrives mid-decode waits for the current batch to finish.

Shapes are bucketed so no request compiles after warm-up: batch rows round up to
a power of two (<= ``max_batch``), prompt width and cache length round up to
powers of two (capped by ``max_model_len``).  :meth:`BatchEngine.warmup`
compiles every bucket ahead of time; ``compiled_shapes`` lists what was built.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from jaxlab.llm.types import LLMRequestError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request: ``n`` rows of the same prompt; ``emit`` receives events from the worker thread.

    Events are ``("delta", row, text)``, ``("finish", row, reason, n_tokens)`` and ``("error", exc)``.
    """

    prompt_ids: list[int]
    max_tokens: int
    emit: Callable[[tuple], None]
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    cancelled: threading.Event = field(default_factory=threading.Event)


def bucket(x: int, lo: int, hi: int) -> int:
    """Smallest power of two >= max(x, lo), capped at ``hi``."""
    b = lo
    while b < x:
        b *= 2
    return min(b, hi)


class _Row:
    """Decoding state of one output row: its tokens, the text sent so far and whether it is done."""

    def __init__(self, job: Job, index: int) -> None:
        self.job, self.index = job, index
        self.ids: list[int] = []
        self.sent = 0
        self.done = job.cancelled.is_set()

    def finish(self, reason: str, text: str) -> None:
        if len(text) > self.sent:
            self.job.emit(("delta", self.index, text[self.sent:]))
        self.job.emit(("finish", self.index, reason, len(self.ids)))
        self.done = True


class BatchEngine:
    """Owns a jaxlab ``DecoderLM`` + tokenizer; :meth:`submit` queues a :class:`Job`."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 8, max_model_len: int = 2048,
                 min_prompt_bucket: int = 64, min_cache_bucket: int = 256, batch_wait_s: float = 0.005) -> None:
        from flax import nnx

        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        limit = model.config.max_position_embeddings
        if not 16 <= max_model_len <= limit:
            raise ValueError(f"max_model_len: expected 16..{limit} (the model's max_position_embeddings), "
                             f"got {max_model_len}")
        self.model, self.tokenizer = model, tokenizer
        self.graphdef, self.state = nnx.split(model)
        self.max_batch, self.max_model_len = max_batch, max_model_len
        self.min_prompt_bucket = min(min_prompt_bucket, max_model_len)
        self.min_cache_bucket = min(min_cache_bucket, max_model_len)
        self.batch_wait_s = batch_wait_s
        eos = getattr(tokenizer, "eos_token_id", None)
        self.stop_ids = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else (min(self.stop_ids) if self.stop_ids else 0))
        self.compiled_shapes: set[tuple[str, int, int, int]] = set()
        self.batches_run = 0
        self.decode_steps = 0  # lets tests see that streamed text arrives while decoding continues
        self.max_rows_seen = 0
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jaxlab-batch-engine", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- public
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def check(self, prompt_len: int, max_tokens: int, n: int) -> None:
        """400-class errors before queueing: too long, too many rows."""
        if prompt_len < 1:
            raise LLMRequestError("prompt: empty after tokenisation")
        if prompt_len + max_tokens > self.max_model_len:
            raise LLMRequestError(f"prompt length {prompt_len} + max_tokens {max_tokens} exceeds the server's "
                                  f"max_model_len {self.max_model_len}")
        if n > self.max_batch:
            raise LLMRequestError(f"n: {n} exceeds the server's --max-batch {self.max_batch}")

    def submit(self, job: Job) -> None:
        self.check(len(job.prompt_ids), job.max_tokens, job.n)
        if self._stopping.is_set() or not self._thread.is_alive():
            raise RuntimeError("the generation engine is not running")
        self._queue.put(job)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def close(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight, fail queued jobs, stop the worker."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.emit(("error", RuntimeError("server shutting down")))

    def shapes(self, rows: int, prompt_len: int, max_tokens: int) -> tuple[int, int, int]:
        """(batch rows, prompt width, cache length) after bucketing."""
        b = bucket(rows, 1, self.max_batch)
        p = bucket(prompt_len, self.min_prompt_bucket, self.max_model_len)
        t = bucket(p + max_tokens, self.min_cache_bucket, self.max_model_len + p)
        return b, p, t

    def warmup(self, max_prompt: int = 256, max_new_tokens: int = 256) -> int:
        """Compile every bucket that requests up to ``max_prompt`` + ``max_new_tokens`` can hit, for every
        batch-row bucket; returns how many shapes exist afterwards.  A bigger request still compiles on use."""
        rows = sorted({bucket(r, 1, self.max_batch) for r in range(1, self.max_batch + 1)})
        shapes = {self.shapes(b, p, m) for b in rows for p in range(1, min(max_prompt, self.max_model_len) + 1)
                  for m in {1, max_new_tokens, *[2 ** k for k in range(max_new_tokens.bit_length())]}
                  if p + m <= self.max_model_len}
        for shape in sorted(shapes):
            self._run_rows([], shape)
        return len(self.compiled_shapes)

    # ---------------------------------------------------------------- worker
    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self._queue.get()
            if job is None:
                break
            jobs, rows = [job], job.n
            deadline_hit = False
            while rows < self.max_batch and not deadline_hit:
                try:
                    nxt = self._queue.get(timeout=self.batch_wait_s)
                except queue.Empty:
                    deadline_hit = True
                    continue
                if nxt is None:
                    self._stopping.set()
                    break
                if rows + nxt.n > self.max_batch:
                    self._queue.put(nxt)  # goes to the back; fine for fairness at this scale
                    break
                jobs.append(nxt)
                rows += nxt.n
            try:
                self._run_jobs(jobs)
            except Exception as exc:  # a backend failure answers every request in the batch, never kills the loop
                log.exception("generation batch failed")
                for j in jobs:
                    j.emit(("error", exc))

    def _run_jobs(self, jobs: Sequence[Job]) -> None:
        rows = [_Row(j, i) for j in jobs for i in range(j.n)]
        longest = max(len(r.job.prompt_ids) for r in rows)
        most = max(r.job.max_tokens for r in rows)
        self.batches_run += 1
        self.max_rows_seen = max(self.max_rows_seen, len(rows))
        self._run_rows(rows, self.shapes(len(rows), longest, most))

    def _text(self, row: _Row) -> str:
        return self.tokenizer.decode([t for t in row.ids if t not in self.stop_ids])

    def _step_rows(self, rows: Sequence[_Row], toks: np.ndarray) -> None:
        for r, tok in zip(rows, toks.tolist()):
            if r.done:
                continue
            if r.job.cancelled.is_set():
                r.done = True
                continue
            r.ids.append(int(tok))
            if tok in self.stop_ids:
                r.finish("stop", self._text(r))
                continue
            text = self._text(r)
            stops = r.job.stop
            hit = min((i for i in (text.find(s, max(0, r.sent - len(s))) for s in stops) if i >= 0), default=-1)
            if hit >= 0:
                r.finish("stop", text[:hit])
                continue
            if len(r.ids) >= r.job.max_tokens:
                r.finish("length", text)
                continue
            hold = max((len(s) - 1 for s in stops), default=0)
            safe = len(text) - hold
            while safe > r.sent and text[safe - 1] == "\ufffd":  # an incomplete multi-byte character
                safe -= 1
            if safe > r.sent:
                r.job.emit(("delta", r.index, text[r.sent:safe]))
                r.sent = safe

    def _run_rows(self, rows: Sequence[_Row], shape: tuple[int, int, int]) -> None:
        import jax.numpy as jnp

        from jaxlab.generate import decode_step, prefill_step

        b, p, t = shape
        ids = np.full((b, p), self.pad_id, np.int32)
        mask = np.zeros((b, p), np.int32)
        temps = np.zeros(b, np.float32)
        top_ps = np.ones(b, np.float32)
        seeds = np.zeros(b, np.int32)
        ids[:, -1], mask[:, -1] = self.pad_id, 1  # padding rows: one dummy token, never read
        for i, r in enumerate(rows):
            toks = r.job.prompt_ids
            ids[i, p - len(toks):], mask[i, p - len(toks):] = toks, 1
            temps[i], top_ps[i] = r.job.temperature, r.job.top_p
            seeds[i] = (r.job.seed * 1_000_003 + r.index) % (2 ** 31)
        temps_j, top_ps_j, seeds_j = jnp.asarray(temps), jnp.asarray(top_ps), jnp.asarray(seeds)
        tok, cache, pos = prefill_step(self.graphdef, self.state, jnp.asarray(ids), jnp.asarray(mask), temps_j,
                                       top_ps_j, seeds_j, cache_len=t)
        self.compiled_shapes.add(("prefill", b, p, t))
        steps = max((r.job.max_tokens for r in rows), default=1)
        for step in range(1, steps + 1):
            self._step_rows(rows, np.asarray(tok))
            if step == steps or all(r.done for r in rows):
                if not rows:  # warm-up: compile the step program too
                    decode_step(self.graphdef, self.state, tok, pos, cache, temps_j, top_ps_j, seeds_j,
                                jnp.int32(step))
                    self.compiled_shapes.add(("decode", b, 1, t))
                break
            tok, cache = decode_step(self.graphdef, self.state, tok, pos, cache, temps_j, top_ps_j, seeds_j,
                                     jnp.int32(step))
            self.compiled_shapes.add(("decode", b, 1, t))
            self.decode_steps += 1
            pos = pos + 1
        for r in rows:  # max_tokens reached inside _step_rows already; this only catches cancelled rows
            if not r.done:
                r.finish("length", self._text(r))
