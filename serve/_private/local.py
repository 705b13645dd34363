"""A version served inside the ingress itself (placement ``ingress``): the fast path for kinds that
need no device resource (cpu), with the request path of bare Ray Serve (proxy -> ingress), no extra
handle hop to a model replica.

:class:`LocalHandle` has the shape of the Serve handle the ingress calls (``infer`` / ``health`` /
``stream`` with ``.remote(...)`` returning an awaitable), so the routing, KPI windows, rollout
monitor and sessions treat it like any other version. :class:`MicroBatcher` batches without a wait:
requests that arrive while a batch runs form the next batch (up to ``max_batch_size``), so one caller
pays no batching delay and many callers still share device batches (what ``serve.batch`` with a
timeout buys, without its fixed wait at low load).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from serve._private.model import ModelServer

__all__ = ["LocalHandle", "MicroBatcher"]


class MicroBatcher:
    """Natural batching: ``submit`` queues one item; a single runner drains the queue in batches."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch_size: int = 16) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size: must be >= 1")
        self.fn, self.max_batch_size = fn, max_batch_size
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._running = False
        self.batches = 0
        self.largest = 0

    async def submit(self, item: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:self.max_batch_size], self._queue[self.max_batch_size:]
                self.batches += 1
                self.largest = max(self.largest, len(batch))
                try:
                    outs = await asyncio.to_thread(self.fn, [item for item, _ in batch])
                except Exception as exc:  # every caller of the batch gets the error, none hangs
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), out in zip(batch, outs, strict=True):
                    if not fut.done():
                        fut.set_result(out)
        finally:
            self._running = False


class _Method:
    def __init__(self, fn: Callable[..., Awaitable[Any]]) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> Awaitable[Any]:
        return self._fn(*args)


class LocalHandle:
    """A :class:`ModelServer` in the ingress process behind the Serve-handle interface."""

    def __init__(self, server: ModelServer, max_batch_size: int = 16) -> None:
        self.server = server
        self.batcher = MicroBatcher(server.infer, max_batch_size)
        self.infer = _Method(self._infer)
        self.health = _Method(self._health)
        self.stream = _Method(self._stream)

    async def _infer(self, spikes: np.ndarray) -> dict[str, Any]:
        return await self.batcher.submit(spikes)

    async def _health(self) -> dict[str, Any]:
        return dict(self.server.health()) | {"placement": "ingress", "batches": self.batcher.batches,
                                             "largest_batch": self.batcher.largest}

    async def _stream(self, spikes: np.ndarray, state: Any = None) -> tuple[dict[str, Any], Any]:
        return await asyncio.to_thread(self.server.step, spikes, state)
