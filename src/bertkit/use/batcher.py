"""Request batching for `bertkit serve`: a queue of requests and one asyncio worker that runs them together.

The worker takes the first waiting request, then keeps gathering requests until it holds `max_batch_size`
items or `wait_s` has passed, runs the model once over all their items in the model thread, and gives each
request its own rows. A request is never split; a batch that fails is run again request by request, so that
an error reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("uvicorn.error")


@dataclass
class Pending:
    items: list
    future: asyncio.Future


@dataclass
class Batcher:
    """A queue of requests and the worker that runs them in batches (see the module docstring).

    `run(items)` takes the texts (or items) of several requests and returns one result per item.
    """

    run: Callable[[list], Sequence]
    max_batch_size: int
    wait_s: float
    pending: deque[Pending] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    requests: int = 0  # requests received
    calls: int = 0  # model calls made
    largest: int = 0  # most items in one call

    async def submit(self, items: list) -> Sequence:
        """The results for `items`, once the batch they joined has run."""
        self.requests += 1
        future = asyncio.get_running_loop().create_future()
        self.pending.append(Pending(items, future))
        self.arrived.set()
        return await future

    async def work(self, executor: Executor) -> None:
        """The worker: forever gather a batch, run it, answer its requests."""
        while True:
            batch = await self._gather()
            try:
                await self._run(batch, executor)
            except Exception as e:  # noqa: BLE001 - a bug here must not stop the worker for everyone
                log.exception("batch worker")
                for p in batch:
                    _resolve(p, error=e)

    async def _gather(self) -> list[Pending]:
        loop = asyncio.get_running_loop()
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        deadline = loop.time() + self.wait_s
        batch: list[Pending] = []
        n = 0
        while True:
            while self.pending and (not batch or n + len(self.pending[0].items) <= self.max_batch_size):
                p = self.pending.popleft()
                if p.future.done():  # cancelled along with its handler: nobody waits for it
                    continue
                batch.append(p)
                n += len(p.items)
            remaining = deadline - loop.time()
            if n >= self.max_batch_size or self.pending or remaining <= 0:  # full, or the next does not fit
                return batch
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return batch

    async def _run(self, batch: list[Pending], executor: Executor) -> None:
        if not batch:
            return
        items = [x for p in batch for x in p.items]
        self.calls += 1
        self.largest = max(self.largest, len(items))
        try:
            results = await asyncio.get_running_loop().run_in_executor(executor, self.run, items)
        except Exception as e:  # noqa: BLE001 - handed to the request(s) that caused it
            if len(batch) == 1:
                _resolve(batch[0], error=e)
                return
            for p in batch:  # again one by one, so that the error reaches only the request that caused it
                await self._run([p], executor)
            return
        if len(results) != len(items):
            raise RuntimeError(f"the model gave {len(results)} results for {len(items)} inputs")
        start = 0
        for p in batch:
            _resolve(p, result=results[start : start + len(p.items)])
            start += len(p.items)


def _resolve(p: Pending, result: Any = None, error: BaseException | None = None) -> None:
    if p.future.done():  # cancelled along with its handler
        return
    if error is not None:
        p.future.set_exception(error)
    else:
        p.future.set_result(result)
