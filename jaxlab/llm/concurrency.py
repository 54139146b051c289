"""Bounded concurrency for model calls: endpoints rate-limit, local models share a device."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_bounded(fn: Callable[[T], R], items: Iterable[T], max_concurrency: int = 8) -> list[R]:
    """``[fn(x) for x in items]`` on at most ``max_concurrency`` threads, order kept.

    The first exception propagates (after the running calls finish) so a failed
    call is never silently dropped from the result list.
    """
    items = list(items)
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency: expected an integer >= 1, got {max_concurrency!r}")
    if len(items) <= 1 or max_concurrency == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(max_concurrency, len(items))) as pool:
        return list(pool.map(fn, items))


async def gather_bounded(coros: Sequence[Awaitable[R]], max_concurrency: int = 8) -> list[R]:
    """``asyncio.gather`` with at most ``max_concurrency`` awaitables in flight."""
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency: expected an integer >= 1, got {max_concurrency!r}")
    sem = asyncio.Semaphore(max_concurrency)

    async def guarded(c: Awaitable[R]) -> R:
        async with sem:
            return await c

    return list(await asyncio.gather(*(guarded(c) for c in coros)))


def map_progress(fn: Callable[[T], R], items: Sequence[T], max_concurrency: int = 4, desc: str = "") -> list[R]:
    """``map_bounded`` with a tqdm bar that advances as items finish (order of results kept)."""
    from concurrent.futures import as_completed

    from tqdm.auto import tqdm

    items = list(items)
    results: list = [None] * len(items)
    with (
        ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(items) or 1))) as pool,
        tqdm(total=len(items), desc=desc, leave=False) as bar,
    ):
        futures = {pool.submit(fn, x): i for i, x in enumerate(items)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update(1)
    return results
