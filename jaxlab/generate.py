"""Batched autoregressive generation with a KV cache.

Prompts of different lengths are left-padded into one batch; the prefill and
the whole decode loop run inside one jitted function (a ``lax.while_loop``),
so a CPU decode step costs one kernel sequence, not a Python round trip.
Sampling is greedy at ``temperature=0`` and otherwise temperature / top-k /
top-p with an explicit PRNG key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.distributed import to_host
from jaxlab.models.decoder import DecoderLM, KVCache
from jaxlab.stop_strings import StopMatcher

Prompt = str | Sequence[int] | Sequence[dict]


@dataclass
class GenerationOutput:
    """New tokens per prompt (stop token included), decoded texts and why each ended."""

    token_ids: list[list[int]]
    texts: list[str]
    finish_reasons: list[str]
    steps: int = 0
    """Tokens the jitted loop generated per row before every row was done (<= ``max_new_tokens``)."""


def _sample(logits: jax.Array, key: jax.Array, temperature: float, top_k: int | None, top_p: float | None) -> jax.Array:
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each token
        sorted_logits = jnp.where(before > top_p, -jnp.inf, sorted_logits)
        logits = jnp.full_like(logits, -jnp.inf).at[jnp.arange(logits.shape[0])[:, None], order].set(sorted_logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_k", "top_p"))
def _generate_ids(
    graphdef: Any,
    state: Any,
    ids: jax.Array,
    mask: jax.Array,
    stop_ids: jax.Array,
    stop_next: jax.Array,
    stop_hit: jax.Array,
    key: jax.Array,
    pad_id: jax.Array,
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(tokens [B, max_new_tokens], done [B], length [B] (tokens kept, the stopping one included), steps run).

    ``stop_next`` / ``stop_hit`` are a :class:`jaxlab.stop_strings.StopMatcher`'s tables: each row carries
    its automaton state, and a token that completes a stop string finishes the row like a stop id."""
    model: DecoderLM = nnx.merge(graphdef, state)
    b, p = ids.shape
    cache = KVCache.init(model.config, b, p + max_new_tokens)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    logits, cache = model.decode(ids, positions, cache, attention_mask=mask, last_only=True)
    next_pos = jnp.sum(mask, axis=1).astype(jnp.int32)
    first = _sample(logits[:, -1], jax.random.fold_in(key, 0), temperature, top_k, top_p)
    out = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)
    sstate = jnp.zeros((b,), jnp.int32)
    done = jnp.isin(first, stop_ids) | stop_hit[sstate, first]
    sstate = stop_next[sstate, first]
    length = jnp.where(done, 1, max_new_tokens).astype(jnp.int32)

    def cond(carry):
        step, _, _, _, done, _, _, _ = carry
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        step, tok, cache, pos, done, out, sstate, length = carry
        logits, cache = model.decode(tok[:, None], pos[:, None], cache)
        nxt = _sample(logits[:, -1], jax.random.fold_in(key, step), temperature, top_k, top_p)
        nxt = jnp.where(done, pad_id, nxt)
        out = out.at[:, step].set(nxt)
        ends = ~done & (jnp.isin(nxt, stop_ids) | stop_hit[sstate, nxt])
        length = jnp.where(ends, step + 1, length)
        sstate = jnp.where(done, sstate, stop_next[sstate, nxt])
        return step + 1, nxt, cache, pos + 1, done | ends, out, sstate, length

    carry = (jnp.int32(1), first, cache, next_pos, done, out, sstate, length)
    step, _, _, _, done, out, _, length = jax.lax.while_loop(cond, body, carry)
    return out, done, length, step


def _encode(prompts: Sequence[Prompt], tokenizer: Any, vocab: int) -> list[list[int]]:
    encoded = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if tokenizer is None:
                raise ValueError(f"prompts[{i}]: a string prompt needs a tokenizer")
            ids = tokenizer.encode(prompt, add_special_tokens=False)
        elif len(prompt) and isinstance(prompt[0], dict):
            if tokenizer is None:
                raise ValueError(f"prompts[{i}]: chat messages need a tokenizer with a chat template")
            text = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
            ids = tokenizer.encode(text, add_special_tokens=False)
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError(f"prompts[{i}]: empty prompt")
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"prompts[{i}]: token id {bad[0]} is outside the vocabulary [0, {vocab})")
        encoded.append(ids)
    return encoded


def generate(
    model: DecoderLM,
    tokenizer: Any,
    prompts: Prompt | Sequence[Prompt],
    *,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    key: jax.Array | None = None,
    stop_token_ids: Sequence[int] | None = None,
    stop_strings: StopMatcher | None = None,
    pad_to_multiple: int = 16,
) -> GenerationOutput:
    """Generate continuations for a batch of prompts (strings, token ids or chat message lists).

    ``stop_token_ids`` defaults to the tokenizer's EOS. ``stop_strings`` (a :class:`StopMatcher` built for
    this vocabulary) ends a row, inside the jitted loop, at the token where its text first contains one of
    the strings (that token kept, finish reason ``"stop"``). Sampling (``temperature > 0``) needs ``key``.
    """
    cfg = model.config
    single = isinstance(prompts, str) or (len(prompts) > 0 and isinstance(prompts[0], (int, np.integer, dict)))
    batch = [prompts] if single else list(prompts)
    if not batch:
        raise ValueError("prompts: expected at least one prompt")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature: expected >= 0, got {temperature}")
    if temperature > 0 and key is None:
        raise ValueError("key: sampling with temperature > 0 needs an explicit PRNG key")
    if top_k is not None and not 1 <= top_k <= cfg.vocab_size:
        raise ValueError(f"top_k: expected 1..{cfg.vocab_size}, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p: expected 0 < top_p <= 1, got {top_p}")
    encoded = _encode(batch, tokenizer, cfg.vocab_size)
    longest = max(map(len, encoded))
    if longest + max_new_tokens > cfg.max_position_embeddings:
        raise ValueError(
            f"prompt length {longest} + max_new_tokens {max_new_tokens} exceeds the model's "
            f"max_position_embeddings {cfg.max_position_embeddings}"
        )
    if stop_token_ids is None:
        eos = getattr(tokenizer, "eos_token_id", None)
        stop_token_ids = [] if eos is None else [eos]
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else pad_id
    width = -(-longest // pad_to_multiple) * pad_to_multiple
    ids = np.full((len(encoded), width), pad_id, np.int32)
    mask = np.zeros((len(encoded), width), np.int32)
    for row, toks in enumerate(encoded):
        ids[row, width - len(toks) :] = toks
        mask[row, width - len(toks) :] = 1
    if stop_strings is None:
        stop_next, stop_hit = np.zeros((1, cfg.vocab_size), np.int32), np.zeros((1, cfg.vocab_size), bool)
    elif stop_strings.hit.shape[1] != cfg.vocab_size:
        raise ValueError(
            f"stop_strings: tables cover {stop_strings.hit.shape[1]} tokens, the model's vocabulary "
            f"has {cfg.vocab_size}"
        )
    else:  # states padded to a multiple of 16 (never reached): one compiled loop for most stop sets
        extra = -stop_strings.hit.shape[0] % 16
        stop_next = np.pad(stop_strings.next_state, ((0, extra), (0, 0)))
        stop_hit = np.pad(stop_strings.hit, ((0, extra), (0, 0)))
    graphdef, state = nnx.split(model)
    out, done, length, steps = _generate_ids(
        graphdef,
        state,
        jnp.asarray(ids),
        jnp.asarray(mask),
        jnp.asarray(list(stop_token_ids) or [-1], jnp.int32),
        jnp.asarray(stop_next),
        jnp.asarray(stop_hit),
        key if key is not None else jax.random.key(0),
        jnp.int32(pad_id),
        max_new_tokens=max_new_tokens,
        temperature=float(temperature),
        top_k=top_k,
        top_p=top_p,
    )
    out, done, length = to_host(out), to_host(done), to_host(length)  # rows may be spread over hosts
    token_ids = [row[:n] for row, n in zip(out.tolist(), length.tolist())]
    reasons = ["stop" if d else "length" for d in done.tolist()]
    stops = set(stop_token_ids)
    texts = (
        [tokenizer.decode([t for t in toks if t not in stops]) for toks in token_ids]
        if tokenizer is not None
        else [""] * len(token_ids)
    )
    return GenerationOutput(token_ids=token_ids, texts=texts, finish_reasons=reasons, steps=int(steps))


# --- step-wise decoding for the server: one jitted admit (prefill), one jitted step -----------------------
# ``generate`` above runs the whole decode inside one ``while_loop``, which cannot stream tokens, let a server
# stop rows early or add requests mid-decode.  These two functions give the same maths one token at a time.
# Sampling params, grammar masks and per-row step counters are arrays (not static args), so requests with
# different temperatures / schemas share one compiled program; the only compile keys are the shapes (batch,
# prompt width, cache length), which the server buckets.  ``allowed`` is a packed bitmask ``int32[B, ceil(V/32)]``
# (bit ``v % 32`` of word ``v // 32``; the layout xgrammar fills) of the tokens each row may sample next; ``-1``
# words allow everything.  Every call also returns the chosen token's log-probability under the model
# (before temperature / masks) and, when ``want_top`` is set, the ``TOP_LOGPROBS`` most likely tokens.

TOP_LOGPROBS = 20


def unpack_bitmask(allowed: jax.Array, vocab: int) -> jax.Array:
    """``int32[B, W]`` packed bits -> ``bool[B, vocab]``."""
    bits = (allowed[:, :, None] >> jnp.arange(32, dtype=jnp.int32)) & 1
    return bits.reshape(allowed.shape[0], -1)[:, :vocab].astype(bool)


def _sample_rows(
    logits: jax.Array, allowed: jax.Array, temps: jax.Array, top_ps: jax.Array, seeds: jax.Array, steps: jax.Array
) -> jax.Array:
    """Greedy where ``temps == 0``, else temperature + nucleus sampling with a per-row seed and step."""
    logits = jnp.where(unpack_bitmask(allowed, logits.shape[-1]), logits, -jnp.inf)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def sampled() -> jax.Array:
        scaled = logits / jnp.maximum(temps, 1e-6)[:, None]
        order = jnp.argsort(-scaled, axis=-1)
        sorted_logits = jnp.take_along_axis(scaled, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs
        sorted_logits = jnp.where(before > top_ps[:, None], -jnp.inf, sorted_logits)
        keys = jax.vmap(lambda s, t: jax.random.fold_in(jax.random.key(s), t))(seeds, steps)
        pick = jax.vmap(lambda k, lg: jax.random.categorical(k, lg))(keys, sorted_logits)
        tok = jnp.take_along_axis(order, pick[:, None], axis=-1)[:, 0].astype(jnp.int32)
        return jnp.where(temps > 0, tok, greedy)

    return jax.lax.cond(jnp.any(temps > 0), sampled, lambda: greedy)


def _pick(
    logits: jax.Array,
    allowed: jax.Array,
    temps: jax.Array,
    top_ps: jax.Array,
    seeds: jax.Array,
    steps: jax.Array,
    want_top: jax.Array,
) -> tuple[jax.Array, ...]:
    """(token, its logprob, top logprobs, top ids) for each row."""
    tok = _sample_rows(logits, allowed, temps, top_ps, seeds, steps)
    logp = jax.nn.log_softmax(logits, axis=-1)
    chosen = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
    k = min(TOP_LOGPROBS, logits.shape[-1])
    top_v, top_i = jax.lax.cond(
        want_top,
        lambda: tuple(jax.lax.top_k(logp, k)),
        lambda: (jnp.zeros((logits.shape[0], k), logp.dtype), jnp.zeros((logits.shape[0], k), jnp.int32)),
    )
    return tok, chosen, top_v, top_i.astype(jnp.int32)


def new_cache(model: DecoderLM, batch: int, cache_len: int) -> KVCache:
    """An empty cache for :func:`admit_step`."""
    return KVCache.init(model.config, batch, cache_len)


@partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("cache",))
def admit_step(
    graphdef: Any,
    state: Any,
    cache: KVCache,
    rows: jax.Array,
    ids: jax.Array,
    mask: jax.Array,
    allowed: jax.Array,
    temps: jax.Array,
    top_ps: jax.Array,
    seeds: jax.Array,
    want_top: jax.Array,
) -> tuple[tuple[jax.Array, ...], KVCache, jax.Array]:
    """Prefill the right-padded prompts ``ids[K, P]`` (``mask``: 1 on real tokens, a prefix) into cache rows
    ``rows[K]`` from slot 0; each row's write index becomes its prompt length.

    Only the ``K`` joining rows run through the model, in a ``P``-slot scratch cache, and the result replaces
    those rows' slots ``[0, P)``: admitting one request into a busy batch costs a ``[1, P]`` prefill, not a
    ``[B, P]`` one, and other rows (their slots and write indices) are untouched. The joining rows are reset
    first: every slot past the prompt is marked invalid and the index restarts at the prompt length, so a
    reused row never attends to its previous occupant's keys. ``rows`` may repeat an index with identical
    inputs (the row bucket's padding). Returns (``_pick`` of each joining row's first token, cache, next
    position per joining row), all ``[K]``."""
    model: DecoderLM = nnx.merge(graphdef, state)
    k_rows, p = ids.shape
    t = cache.valid.shape[1]
    if p > t:
        raise ValueError(f"ids: prompt width {p} exceeds the cache's {t} slots")
    scratch = KVCache(
        k=tuple(jnp.zeros((k_rows, p) + k.shape[2:], k.dtype) for k in cache.k),
        v=tuple(jnp.zeros((k_rows, p) + v.shape[2:], v.dtype) for v in cache.v),
        valid=jnp.zeros((k_rows, p), bool),
        index=jnp.zeros((k_rows,), jnp.int32),
    )
    positions = jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (k_rows, p))
    logits, sub = model.decode(ids, positions, scratch, attention_mask=mask, last_only=True)
    first = _pick(logits[:, -1], allowed, temps, top_ps, seeds, jnp.zeros_like(seeds), want_top)
    length = jnp.sum(mask, axis=1).astype(jnp.int32)
    valid = jnp.zeros((k_rows, t), bool).at[:, :p].set(sub.valid)  # the reset: nothing past the prompt is valid
    out = KVCache(
        k=tuple(k.at[rows, :p].set(n) for k, n in zip(cache.k, sub.k)),
        v=tuple(v.at[rows, :p].set(n) for v, n in zip(cache.v, sub.v)),
        valid=cache.valid.at[rows].set(valid),
        index=cache.index.at[rows].set(length),
    )
    return first, out, length


@partial(jax.jit, static_argnames=("graphdef", "span"), donate_argnames=("cache",))
def decode_step(
    graphdef: Any,
    state: Any,
    tok: jax.Array,
    pos: jax.Array,
    cache: KVCache,
    allowed: jax.Array,
    temps: jax.Array,
    top_ps: jax.Array,
    seeds: jax.Array,
    steps: jax.Array,
    want_top: jax.Array,
    span: int | None = None,
) -> tuple[tuple[jax.Array, ...], KVCache]:
    """One token for every row at positions ``pos``, written at each row's own cache index (``steps``: each
    row's token index, for its PRNG stream); the cache buffer is donated (updated in place).

    ``span`` (static): attend over the first ``span`` slots only; the caller keeps every live row's index
    below it. Indices stop at the last slot, so idle rows (free, decoding padding) never write out of bounds."""
    model: DecoderLM = nnx.merge(graphdef, state)
    logits, cache = model.decode(tok[:, None], pos[:, None], cache, span=span)
    cache = cache.replace(index=jnp.minimum(cache.index, cache.valid.shape[1] - 1))
    return _pick(logits[:, -1], allowed, temps, top_ps, seeds, steps, want_top), cache
