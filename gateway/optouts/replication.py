"""Opt-outs acknowledged only once a replica holds them: the one bounded ``WAIT`` of every opt-out write.

Redis replication is asynchronous, so a write acknowledged by the master can be lost when the master
dies and Sentinel promotes a replica that had not received it yet. For an opt-out that would mean
messaging a member who said stop, so where the master has replicas every opt-out write is followed,
on the same connection (``WAIT`` counts the writes of its own connection), by ``WAIT 1 <wait_ms>``.
If no replica acknowledges in time the write is answered 503 with Retry-After (the write is
idempotent: the caller retries; the opt-out script marks its write pending meanwhile, so the retry is
answered as the first attempt would have been: see ``OptOuts``). Without replicas (the embedded dev Redis) nothing waits; whether
there are replicas is read from ``INFO replication`` at most once per ``CHECK_SECONDS``. Once a
process has seen replicas it keeps waiting when the master reports none (a replica whose link just
broke, a master promoted a moment ago): those opt-outs are answered 503 until a replica holds them,
never acknowledged on the master alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from gateway import metrics
from gateway.errors import Unavailable
from gateway.state.clusterpipe import ClusterPipe

# How long the answer of INFO replication is trusted: the first replica of a master this process has
# not yet seen with one may go unwaited for this long.
CHECK_SECONDS = 2.0

Call = tuple[list[str], list[str | bytes]]
Queue = Callable[[Pipeline], Awaitable[None]]  # puts the writes on the pipeline it is given


class OptOutNotReplicated(Unavailable):
    """No replica acknowledged an opt-out within the bound: 503 with Retry-After, retry (idempotent)."""


class ReplicatedWrites:
    """Run opt-out scripts and, where the master has replicas, wait (bounded) until one holds them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        wait_ms: int,
        clock: Callable[[], float] = time.monotonic,
        cluster: ClusterPipe | None = None,
    ) -> None:
        self.redis = redis
        self.cluster = cluster  # on a Cluster: each write and its WAIT on the master of its slot
        self.wait_ms = wait_ms
        self._clock = clock
        self._replicated = False
        self._checked = -CHECK_SECONDS

    async def waits(self) -> bool:
        """Whether opt-outs wait for a replica: the master has had one (False when waiting is off)."""
        if self.wait_ms <= 0 or self._replicated:
            return self._replicated and self.wait_ms > 0
        if self.cluster is not None:  # each master's replicas, asked of the Cluster (cached there)
            return await self.cluster.has_replicas()
        now = self._clock()
        if now - self._checked >= CHECK_SECONDS:
            info = await self.redis.info("replication")
            self._replicated = int(info.get("connected_slaves", 0)) > 0
            self._checked = now
        return self._replicated

    async def run(self, script: AsyncScript, calls: Sequence[Call], *, wait: bool | None = None) -> list[Any]:
        """The script's result for each call, acknowledged by a replica where there is one.

        ``wait``: whether to wait, as the caller read it from ``waits()`` to build the calls (a script
        that marks its write pending needs to know); None reads it here."""
        if wait is None:
            wait = await self.waits()
        if self.cluster is not None:
            return await self._on_cluster(script, calls, wait=wait)
        if not wait and len(calls) == 1:
            metrics.OPTOUT_REPLICATION_WAITS.labels("no_replicas").inc()
            k, a = calls[0]
            return [await script(keys=k, args=a)]

        async def queue(pipe: Pipeline) -> None:
            for k, a in calls:
                await script(keys=k, args=a, client=pipe)

        return await self.pipeline(queue, wait=wait)

    async def pipeline(self, queue: Queue, *, wait: bool | None = None) -> list[Any]:
        """The results of the commands ``queue`` puts on one pipeline (plain commands, such as
        reconcile's ``HSETNX``), acknowledged by a replica where there is one."""
        if wait is None:
            wait = await self.waits()
        if not wait:
            metrics.OPTOUT_REPLICATION_WAITS.labels("no_replicas").inc()
            return await self._pipeline(queue, wait=False)
        results = await self._pipeline(queue, wait=True)
        acked = int(results.pop())
        if acked < 1:
            raise self._not_replicated()  # the master may well hold it; no replica does yet
        metrics.OPTOUT_REPLICATION_WAITS.labels("replicated").inc()
        return results

    async def _on_cluster(self, script: AsyncScript, calls: Sequence[Call], *, wait: bool) -> list[Any]:
        assert self.cluster is not None
        source = script.script if isinstance(script.script, str) else bytes(script.script).decode()
        if not wait:
            metrics.OPTOUT_REPLICATION_WAITS.labels("no_replicas").inc()
            return await self.cluster.run_many(source, calls)
        results = []
        for k, a in calls:
            result, acked = await self.cluster.call(source, k, a, wait_ms=self.wait_ms)
            if acked < 1:
                raise self._not_replicated()
            results.append(result)
        metrics.OPTOUT_REPLICATION_WAITS.labels("replicated").inc()
        return results

    def _not_replicated(self) -> OptOutNotReplicated:
        """The 503 for a write no replica acknowledged in time (counted)."""
        metrics.OPTOUT_REPLICATION_WAITS.labels("timed_out").inc()
        return OptOutNotReplicated(
            "optout_not_replicated",
            f"no replica acknowledged the opt-out within {self.wait_ms} ms; retry shortly "
            "(repeating it is harmless)",
            headers={"Retry-After": "1"},
        )

    async def _pipeline(self, queue: Queue, *, wait: bool) -> list[Any]:
        # A pipeline keeps one connection for its commands, so the WAIT follows the writes it counts.
        async with self.redis.pipeline(transaction=False) as pipe:
            await queue(pipe)
            if wait:
                pipe.wait(1, self.wait_ms)
            return list(await pipe.execute())
