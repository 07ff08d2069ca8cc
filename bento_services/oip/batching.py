"""Batching of the protocol's requests in one worker: the records of requests that arrive
while a batch is being computed are computed together next, up to ``max_records`` a batch.

Unlike BentoML's adaptive batching (which ``/predict`` gets), nothing waits for a batch to
fill: a request that finds the worker idle is computed at once, alone, so a lone request's
answer is exactly what ``/predict`` answers for the same records; under load the batches grow
by themselves, and one call of the model per batch keeps up with single-record requests.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import anyio


class Batcher:
    """``await batcher(items)`` -> ``compute(items)``'s results for those items; ``compute``
    (list -> list of the same length) runs in one thread at a time, off the event loop. A
    request is never split: one over ``max_records`` is a batch alone (``max_records=0``: every
    request alone, one after another)."""

    def __init__(self, compute: Callable[[list], list], max_records: int = 1000) -> None:
        self.compute, self.max_records = compute, max_records
        self._waiting: list[tuple[list, asyncio.Future]] = []
        self._draining = False

    async def __call__(self, items: list) -> list:
        if not items:
            return []
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _next_batch(self) -> list[tuple[list, asyncio.Future]]:
        batch, count = [], 0
        while self._waiting and (not batch or count + len(self._waiting[0][0]) <= self.max_records):
            items, future = self._waiting.pop(0)
            if not future.cancelled():  # its caller went away
                batch.append((items, future))
                count += len(items)
        return batch

    async def _drain(self) -> None:
        try:
            while batch := self._next_batch():
                flat = [item for items, _ in batch for item in items]
                try:
                    results = await anyio.to_thread.run_sync(self.compute, flat)
                except Exception as e:  # every request of the batch gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                at = 0
                for items, future in batch:
                    if not future.done():
                        future.set_result(results[at:at + len(items)])
                    at += len(items)
        finally:
            self._draining = False
