"""Batching generation engine behind ``jaxlab serve``: many HTTP requests, one jitted batch.

A single worker thread owns the model.  It takes the oldest waiting job plus
every other job already queued (up to ``max_batch`` rows; a request with ``n``
samples is ``n`` rows), prefills them into one batch and decodes it token by
token, streaming each row's text out as it grows.  Batching is continuous:
before every decode step, waiting jobs are admitted into rows that finished
(or were padding), with one prefill call over just the joining rows.  Every
cache row has its own write index: a joining request is written into its row
from slot 0 (the row reset, so it never sees the previous occupant), the other
rows keep decoding at their own slots, and a batch never runs out of room by
admitting.  A job whose prompt + ``max_tokens`` exceeds the batch's cache
length waits (and holds the queue, first come first served) until the batch
drains and a bigger one starts.  Each decode step attends over the smallest
power-of-two span (>= ``min_span``) that covers every live row, not the whole cache.

Shapes are bucketed so no request compiles after warm-up: batch rows round up to
a power of two (<= ``max_batch``), prompt width and cache length round up to
powers of two (capped by ``max_model_len``); batches of more than one row get
at least ``join_cache_len`` slots so longer requests can join; decode spans are
powers of two between ``min_span`` and the cache length.
:meth:`BatchEngine.warmup` compiles every bucket ahead of time;
``compiled_shapes`` lists what was built.

Per row the engine also applies a grammar mask (``response_format`` JSON, see
:mod:`jaxlab.llm.grammar`) and reports log-probabilities when asked.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from jaxlab.llm.grammar import GrammarBook, RowMatcher, bitmask_words
from jaxlab.llm.types import LLMRequestError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request: ``n`` rows of the same prompt; ``emit`` receives events from the worker thread.

    Events are ``("delta", row, text, logprobs)``, ``("finish", row, reason, n_tokens, logprobs)`` and
    ``("error", exc)``; ``logprobs`` is ``None`` unless ``logprobs`` is set, else the OpenAI entries
    (``{"token", "logprob", "bytes", "top_logprobs"}``) of the tokens behind that text.  ``logprobs`` is
    how many alternatives to report per token (0: only the chosen token's).  ``grammar`` is a compiled
    grammar from :class:`GrammarBook` that masks every sampled token.
    """

    prompt_ids: list[int]
    max_tokens: int
    emit: Callable[[tuple], None]
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    grammar: Any = None
    cancelled: threading.Event = field(default_factory=threading.Event)


def bucket(x: int, lo: int, hi: int) -> int:
    """Smallest power of two >= max(x, lo), capped at ``hi``."""
    b = lo
    while b < x:
        b *= 2
    return min(b, hi)


class _Row:
    """Decoding state of one output row: its tokens, the text sent so far and whether it is done."""

    def __init__(self, job: Job, index: int, words: int) -> None:
        self.job, self.index = job, index
        self.ids: list[int] = []
        self.sent = 0
        self.done = job.cancelled.is_set()
        self.matcher = RowMatcher(job.grammar, words) if job.grammar is not None else None
        self.pending: list[dict] | None = [] if job.logprobs is not None else None

    def take_logprobs(self) -> list[dict] | None:
        out = self.pending
        if out is not None:
            self.pending = []
        return out

    def emit_delta(self, text: str) -> None:
        self.job.emit(("delta", self.index, text, self.take_logprobs()))

    def finish(self, reason: str, text: str) -> None:
        if len(text) > self.sent:
            self.emit_delta(text[self.sent :])
        self.job.emit(("finish", self.index, reason, len(self.ids), self.take_logprobs()))
        self.done = True

    @property
    def left(self) -> int:
        """Cache slots this row may still write."""
        return 0 if self.done else self.job.max_tokens - len(self.ids)


class _Batch:
    """One cache and its rows (``None`` = free); host copies of the per-row arrays the jitted steps take."""

    def __init__(self, b: int, t: int, words: int) -> None:
        self.b, self.t = b, t
        self.rows: list[_Row | None] = [None] * b
        self.tok = np.zeros(b, np.int32)
        self.pos = np.zeros(b, np.int32)  # each row's next position = its cache write index (prompts start at 0)
        self.allowed = np.full((b, words), -1, np.int32)
        self.temps = np.zeros(b, np.float32)
        self.top_ps = np.ones(b, np.float32)
        self.seeds = np.zeros(b, np.int32)
        self.cache: Any = None

    def free(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r is None or r.done]

    def active(self) -> list[_Row]:
        return [r for r in self.rows if r is not None and not r.done]

    def want_top(self) -> bool:
        return any((r.job.logprobs or 0) > 0 for r in self.active())


class BatchEngine:
    """Owns a jaxlab ``DecoderLM`` + tokenizer; :meth:`submit` queues a :class:`Job`."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch: int = 8,
        max_model_len: int = 2048,
        min_prompt_bucket: int = 64,
        min_cache_bucket: int = 256,
        batch_wait_s: float = 0.005,
        join_cache_len: int = 512,
        continuous: bool = True,
        min_span: int = 64,
    ) -> None:
        from flax import nnx

        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        limit = model.config.max_position_embeddings
        if not 16 <= max_model_len <= limit:
            raise ValueError(
                f"max_model_len: expected 16..{limit} (the model's max_position_embeddings), got {max_model_len}"
            )
        self.model, self.tokenizer = model, tokenizer
        self.graphdef, self.state = nnx.split(model)
        self.max_batch, self.max_model_len = max_batch, max_model_len
        self.min_prompt_bucket = min(min_prompt_bucket, max_model_len)
        self.min_cache_bucket = min(min_cache_bucket, max_model_len)
        self.join_cache_len = bucket(join_cache_len, self.min_cache_bucket, 2 * max_model_len)
        self.min_span = min_span
        self.batch_wait_s = batch_wait_s
        self.continuous = continuous
        eos = getattr(tokenizer, "eos_token_id", None)
        self.stop_ids = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else (min(self.stop_ids) if self.stop_ids else 0))
        self.vocab_size = model.config.vocab_size
        self.words = bitmask_words(self.vocab_size)
        self.grammars = GrammarBook(tokenizer, self.vocab_size, self.stop_ids)
        self.compiled_shapes: set[tuple] = set()
        self.batches_run = 0  # fresh caches started
        self.admitted_mid_batch = 0  # jobs that joined a batch already decoding
        self.decode_steps = 0  # lets tests see that streamed text arrives while decoding continues
        self.max_rows_seen = 0
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting: collections.deque[Job] = collections.deque()  # worker-only: taken but not yet admitted
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
            raise LLMRequestError(
                f"prompt length {prompt_len} + max_tokens {max_tokens} exceeds the server's "
                f"max_model_len {self.max_model_len}"
            )
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
        left = list(self._waiting)
        while True:
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for job in left:
            if job is not None:
                job.emit(("error", RuntimeError("server shutting down")))

    def prompt_bucket(self, prompt_len: int) -> int:
        return bucket(prompt_len, self.min_prompt_bucket, self.max_model_len)

    def shapes(self, rows: int, prompt_len: int, max_tokens: int) -> tuple[int, int, int]:
        """(batch rows, prompt width, cache length) of a fresh batch after bucketing."""
        b = bucket(rows, 1, self.max_batch)
        p = self.prompt_bucket(prompt_len)
        t = bucket(p + max_tokens, self.min_cache_bucket, self.max_model_len + p)
        if self.continuous and b > 1:
            t = max(t, self.join_cache_len)
        return b, p, t

    def warmup(self, max_prompt: int = 256, max_new_tokens: int = 256) -> int:
        """Compile every bucket that requests up to ``max_prompt`` + ``max_new_tokens`` can hit, for every
        batch-row bucket (including admissions into a running batch at every prompt width); returns how many
        shapes exist afterwards.  A bigger request still compiles on use."""
        rows = sorted({bucket(r, 1, self.max_batch) for r in range(1, self.max_batch + 1)})
        fresh = {
            self.shapes(b, p, m)
            for b in rows
            for p in range(1, min(max_prompt, self.max_model_len) + 1)
            for m in {1, max_new_tokens, *[2**k for k in range(max_new_tokens.bit_length())]}
            if p + m <= self.max_model_len
        }
        shapes = set(fresh)
        if self.continuous:
            widths = {p for _, p, _ in fresh}
            shapes |= {(b, p, t) for b, _, t in fresh if b > 1 for p in widths if p < t}
        longest = min(max_prompt + max_new_tokens, self.max_model_len)
        decodes: set[tuple[int, int]] = set()
        for b, p, t in sorted(shapes):
            batch = _Batch(b, t, self.words)
            batch.cache = self._new_cache(b, t)
            # a fresh batch admits all its rows; one that is decoding admits 1, 2, 4, ... rows into free ones
            joins = {bucket(r, 1, b) for r in range(1, b + 1)} if self.continuous and b > 1 else {b}
            for k in sorted(joins):
                self._admit(batch, [], p, warm_rows=k)
            for span in sorted(self.spans(t, longest)):
                if (b, t, span) not in decodes:
                    decodes.add((b, t, span))
                    self._decode(batch, span=span)
        return len(self.compiled_shapes)

    def span(self, t: int, live: int) -> int:
        """Decode attention span of a ``t``-slot cache whose live rows write slots below ``live``."""
        return bucket(live, self.min_span, t)

    def spans(self, t: int, longest: int) -> set[int]:
        """Every span a ``t``-slot cache takes while its rows stay under ``longest`` slots."""
        return {self.span(t, min(2**k, longest)) for k in range(max(longest, 1).bit_length() + 1)}

    # ---------------------------------------------------------------- worker
    def _next_job(self, timeout: float | None) -> Job | None:
        """The oldest waiting job (``None``: nothing within ``timeout``, or stopping)."""
        if self._waiting:
            return self._waiting.popleft()
        try:
            job = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if job is None:
            self._stopping.set()
        return job

    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self._next_job(None)
            if job is None:
                break
            jobs, rows = [job], job.n
            while rows < self.max_batch:
                nxt = self._next_job(self.batch_wait_s)
                if nxt is None:
                    break
                if rows + nxt.n > self.max_batch:
                    self._waiting.appendleft(nxt)
                    break
                jobs.append(nxt)
                rows += nxt.n
            batch: _Batch | None = None
            try:
                batch = self._start(jobs)
                self._run(batch)
            except Exception as exc:  # a backend failure answers every request in the batch, never kills the loop
                log.exception("generation batch failed")
                failed = {id(j): j for j in jobs}
                for r in batch.rows if batch is not None else []:
                    if r is not None and not r.done:
                        failed[id(r.job)] = r.job
                for j in failed.values():
                    j.emit(("error", exc))

    def _new_cache(self, b: int, t: int) -> Any:
        from jaxlab.generate import new_cache

        return new_cache(self.model, b, t)

    def _start(self, jobs: Sequence[Job]) -> _Batch:
        longest = max(len(j.prompt_ids) for j in jobs)
        most = max(j.max_tokens for j in jobs)
        b, p, t = self.shapes(sum(j.n for j in jobs), longest, most)
        batch = _Batch(b, t, self.words)
        batch.cache = self._new_cache(b, t)
        self.batches_run += 1
        self._admit(batch, list(jobs), p)
        return batch

    def _fits(self, batch: _Batch, job: Job, width: int, free: int) -> bool:
        """A joining row uses its own slots ``[0, prompt + max_tokens)``; the prefill writes ``width`` of them."""
        return job.n <= free and width <= batch.t and len(job.prompt_ids) + job.max_tokens <= batch.t

    def _admit_waiting(self, batch: _Batch) -> None:
        """Move queued jobs into free rows when their prompt and budget fit in a row of the cache."""
        if not self.continuous or self._stopping.is_set():
            return
        free = len(batch.free())
        if not free:
            return
        while True:  # drain the thread-safe queue into the worker's list (order kept)
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stopping.set()
                return
            self._waiting.append(job)
        chosen: list[Job] = []
        width = 0
        while self._waiting:  # first come, first served: stop at the first job that does not fit
            job = self._waiting[0]
            w = max(width, self.prompt_bucket(len(job.prompt_ids)))
            if job.cancelled.is_set():
                self._waiting.popleft()
                continue
            if not self._fits(batch, job, w, free):
                break
            chosen.append(self._waiting.popleft())
            free -= job.n
            width = w
        if chosen:
            self.admitted_mid_batch += len(chosen)
            self._admit(batch, chosen, width)

    def _admit(self, batch: _Batch, jobs: list[Job], width: int, warm_rows: int = 0) -> None:
        """Prefill ``jobs`` into free rows of ``batch`` with one jitted call of prompt width ``width`` over just
        the joining rows (their count rounded up to a power of two; the padding repeats the first row).
        Prompts are right-padded: each row's tokens sit at slots and positions ``[0, len)``."""
        import jax.numpy as jnp

        from jaxlab.generate import admit_step

        slots = iter(batch.free())
        new: list[_Row] = []
        joining: list[int] = []
        for job in jobs:
            for k in range(job.n):
                i = next(slots)
                row = batch.rows[i] = _Row(job, k, self.words)
                new.append(row)
                joining.append(i)
                batch.temps[i], batch.top_ps[i] = job.temperature, job.top_p
                batch.seeds[i] = (job.seed * 1_000_003 + k) % (2**31)
                batch.allowed[i] = row.matcher.allowed() if row.matcher is not None else -1
        if not jobs:  # warm-up: compile the admission of ``warm_rows`` rows
            joining = list(range(warm_rows or batch.b))
        k = bucket(len(joining), 1, batch.b)
        rows = np.asarray(joining + [joining[0]] * (k - len(joining)), np.int32)
        ids = np.full((k, width), self.pad_id, np.int32)
        mask = np.zeros((k, width), np.int32)
        ids[:, 0], mask[:, 0] = self.pad_id, 1  # warm-up rows: one dummy token
        for j, r in enumerate(new):
            toks = r.job.prompt_ids
            ids[j], mask[j] = self.pad_id, 0
            ids[j, : len(toks)], mask[j, : len(toks)] = toks, 1
        for j in range(len(new), k):  # padding repeats the first joining row exactly
            ids[j], mask[j] = ids[0], mask[0]
        self.max_rows_seen = max(self.max_rows_seen, len(batch.active()))
        picked, batch.cache, pos = admit_step(
            self.graphdef,
            self.state,
            batch.cache,
            jnp.asarray(rows),
            jnp.asarray(ids),
            jnp.asarray(mask),
            jnp.asarray(batch.allowed[rows]),
            jnp.asarray(batch.temps[rows]),
            jnp.asarray(batch.top_ps[rows]),
            jnp.asarray(batch.seeds[rows]),
            jnp.asarray(any((r.job.logprobs or 0) > 0 for r in new)),
        )
        self.compiled_shapes.add(("admit", batch.b, k, width, batch.t))
        n = len(joining)  # the first n of the K outputs are the joining rows; the rest is padding
        batch.pos[joining] = np.asarray(pos)[:n]
        full = []
        for x in map(np.asarray, picked):  # per-row outputs back at their batch rows, as _take reads them
            f = np.zeros((batch.b,) + x.shape[1:], x.dtype)
            f[joining] = x[:n]
            full.append(f)
        self._take(batch, tuple(full), only=new)

    def _decode(self, batch: _Batch, span: int | None = None) -> None:
        """One decode step; ``span`` defaults to the smallest that covers every live row's write slot."""
        import jax.numpy as jnp

        from jaxlab.generate import decode_step

        live = [i for i, r in enumerate(batch.rows) if r is not None and not r.done]
        if live and int(batch.pos[live].max()) >= batch.t:  # cannot happen while _fits holds
            raise RuntimeError(f"cache of {batch.t} slots is full (row at slot {int(batch.pos[live].max())})")
        if span is None:
            span = self.span(batch.t, int(batch.pos[live].max()) + 1 if live else 1)
        steps = np.array([len(r.ids) if r is not None else 0 for r in batch.rows], np.int32)
        picked, batch.cache = decode_step(
            self.graphdef,
            self.state,
            jnp.asarray(batch.tok),
            jnp.asarray(batch.pos),
            batch.cache,
            jnp.asarray(batch.allowed),
            jnp.asarray(batch.temps),
            jnp.asarray(batch.top_ps),
            jnp.asarray(batch.seeds),
            jnp.asarray(steps),
            jnp.asarray(batch.want_top()),
            span=span,
        )
        self.compiled_shapes.add(("decode", batch.b, 1, batch.t, span))
        batch.pos[live] += 1
        self._take(batch, picked, only=None)

    def _run(self, batch: _Batch) -> None:
        while batch.active():
            self._admit_waiting(batch)
            self._decode(batch)
            self.decode_steps += 1

    # ---------------------------------------------------------------- per-token bookkeeping
    def _entry(self, tok: int, lp: float, alts: list[tuple[int, float]] | None) -> dict:
        def one(t: int, v: float) -> dict:
            text = self.tokenizer.decode([t])
            return {"token": text, "logprob": float(v), "bytes": list(text.encode("utf-8"))}

        return {**one(tok, lp), "top_logprobs": [one(t, v) for t, v in (alts or [])]}

    def _text(self, row: _Row) -> str:
        return self.tokenizer.decode([t for t in row.ids if t not in self.stop_ids])

    def _take(self, batch: _Batch, picked: tuple, only: list[_Row] | None) -> None:
        """Hand each row its sampled token (``only``: just these rows, after an admission)."""
        tok, chosen, top_v, top_i = (np.asarray(x) for x in picked)
        want = only if only is not None else [r for r in batch.rows if r is not None]
        for i, r in enumerate(batch.rows):
            if r is None or r.done or r not in want:
                continue
            t = int(tok[i])
            batch.tok[i] = t
            if r.pending is not None and t not in self.stop_ids:
                k = r.job.logprobs or 0
                r.pending.append(self._entry(t, chosen[i], list(zip(top_i[i, :k].tolist(), top_v[i, :k].tolist()))))
            self._step_row(r, t)
            if r.matcher is not None and not r.done:
                batch.allowed[i] = r.matcher.allowed()

    def _step_row(self, r: _Row, tok: int) -> None:
        if r.job.cancelled.is_set():
            r.done = True
            return
        r.ids.append(tok)
        if r.matcher is not None and not r.matcher.accept(tok):
            raise RuntimeError(f"grammar rejected sampled token {tok}")
        if tok in self.stop_ids:
            r.finish("stop", self._text(r))
            return
        text = self._text(r)
        stops = r.job.stop
        hit = min((i for i in (text.find(s, max(0, r.sent - len(s))) for s in stops) if i >= 0), default=-1)
        if hit >= 0:
            r.finish("stop", text[:hit])
            return
        if len(r.ids) >= r.job.max_tokens:
            r.finish("length", text)
            return
        hold = max((len(s) - 1 for s in stops), default=0)
        safe = len(text) - hold
        while safe > r.sent and text[safe - 1] == "\ufffd":  # an incomplete multi-byte character
            safe -= 1
        if safe > r.sent:
            r.emit_delta(text[r.sent : safe])
            r.sent = safe
