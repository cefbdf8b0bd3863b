"""The provider rate limit holds at the moment of sending, even when the sender wakes up late."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest
import redis
import redis.asyncio as aioredis

from channels import Message, Outcome, SendResult
from channels.routing import Provider, Route, Router
from gateway.delivery.engine import DeliveryEngine
from gateway.delivery.health import RedisHealth
from gateway.delivery.outcomes import RATE_LIMITED
from gateway.services import build_services
from gateway.settings import load_settings
from gateway.state import keys
from gateway.state.redisdb import async_client, free_port

pytestmark = pytest.mark.integration


class Recorder:
    """A provider stand-in that answers at once and notes when each send started."""

    channels: ClassVar[frozenset[str]] = frozenset({"sms"})

    def __init__(self, name: str) -> None:
        self.name = name
        self.starts: list[float] = []

    async def send(self, message: Message) -> SendResult:
        self.starts.append(time.monotonic())
        return SendResult(Outcome.SENT, self.name, provider_message_id=message.reference)

    async def aclose(self) -> None:
        return None


def busiest(times: list[float], window: float) -> int:
    """The most sends inside any sliding window of that many seconds."""
    times, j, most = sorted(times), 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= window:
            j += 1
        most = max(most, i - j + 1)
    return most


def messages(n: int, prefix: str) -> list[Message]:
    return [Message(f"{prefix}{i}", "acme", "sms", f"138{i:08d}", text="hi") for i in range(n)]


@pytest.fixture
def send_log(redis_url: str, rdb: redis.Redis) -> Iterator[tuple[Provider, Callable[[], list[float]]]]:
    """A provider limited to 50/s, and a call that returns every send its log recorded (Redis time).

    A thread reads the log while the test's event loop may be blocked: an entry stays a whole window
    (one second) before it is trimmed, and the thread looks every 50 ms.
    """
    name = f"gated{uuid.uuid4().hex[:6]}"
    seen: dict[bytes, float] = {}
    stop = threading.Event()

    def watch() -> None:
        reader = redis.Redis.from_url(redis_url)
        while True:
            seen.update(reader.zrange(keys.provider_sent(name), 0, -1, withscores=True))
            if stop.wait(0.05):
                break
        seen.update(reader.zrange(keys.provider_sent(name), 0, -1, withscores=True))
        reader.close()

    def logged() -> list[float]:
        stop.set()
        watcher.join(5)
        return list(seen.values())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield Provider(name, Recorder(name), rate_per_second=50, rate_headroom=0.1), logged
    logged()


def engine(redis_url: str, provider: Provider) -> tuple[DeliveryEngine, aioredis.Redis]:
    """A worker's delivery engine (its own Redis connections) routing sms to the provider."""
    settings = load_settings({}, redis_url=redis_url)
    core = build_services(settings, redis_url)
    router = Router({provider.name: provider}, {"sms": [Route(provider.name)]})
    return DeliveryEngine(settings, core.store, router, RedisHealth(core.redis), core.policy), core.redis


def test_two_workers_woken_late_together_still_send_within_the_window(
    redis_url: str, send_log: tuple[Provider, Callable[[], list[float]]]
) -> None:
    provider, logged = send_log
    recorder = provider.adapter
    assert isinstance(recorder, Recorder) and provider.send_window == (1.0, 45)
    per_worker = 60  # each reserves all its slots at once (send_concurrency 64): 2.7 s of them in all

    async def run() -> list[list[tuple[SendResult, float]]]:
        workers = [engine(redis_url, provider) for _ in range(2)]

        try:
            # The loaded CI machine: 0.3 s in, the loop is blocked while ~54 of the planned slots
            # pass, so their sleepers all wake at once when it runs again.
            asyncio.get_running_loop().call_later(0.3, time.sleep, 1.2)
            wait_until = time.monotonic() + 30
            return await asyncio.gather(
                *(
                    w._send_via(provider, messages(per_worker, f"w{k}-"), wait_until)
                    for k, (w, _) in enumerate(workers)
                )
            )
        finally:
            for _, client in workers:
                await client.aclose()

    results = asyncio.run(run())
    assert all(r.outcome is Outcome.SENT for worker in results for r, _ in worker)
    assert len(recorder.starts) == 2 * per_worker
    # Most of the sends went after the stall: the late sleepers were there to bunch.
    assert sum(1 for t in recorder.starts if t >= recorder.starts[0] + 1.2) > 45
    # Redis's own record of the send moments: never more than 45 in any second, every send once.
    moments = logged()
    assert len(moments) == 2 * per_worker
    assert busiest(moments, 1.0) <= 45
    # And where the sends started: within the provider's 50/s (the headroom takes the jitter).
    assert busiest(recorder.starts, 1.0) <= 50


def test_a_send_that_would_wait_past_wait_until_is_given_back_unsent(
    redis_url: str, rdb: redis.Redis
) -> None:
    name = f"slow{uuid.uuid4().hex[:6]}"
    recorder = Recorder(name)
    provider = Provider(name, recorder, rate_per_second=0.5, rate_headroom=0.1)  # one send in any 2.2 s

    async def run() -> list[tuple[SendResult, float]]:
        worker, client = engine(redis_url, provider)
        try:
            # Another worker has just sent: its slot was planned long ago, it woke up late.
            other = async_client(redis_url)
            assert await RedisHealth(other).gate(provider, 1, 10.0) == (True, 0.0)
            await other.aclose()
            # This worker's own slot is free now, but the window is not for 2.2 s: more than it may wait.
            return await worker._send_via(provider, messages(1, "late"), time.monotonic() + 1.0)
        finally:
            await client.aclose()

    [(held, _)] = asyncio.run(run())
    assert held.outcome is Outcome.RETRY and held.code == RATE_LIMITED
    # As for a reservation: when the wait would be within the same budget again.
    assert held.retry_after is not None and 1.0 < held.retry_after <= 1.25
    assert recorder.starts == []
    assert rdb.zcard(keys.provider_sent(name)) == 1  # nothing counted for the one given back


def test_the_gate_counts_sends_spaces_the_ones_that_wait_and_costs_unlimited_nothing(
    redis_url: str, rdb: redis.Redis
) -> None:
    name = f"batch{uuid.uuid4().hex[:6]}"
    limited = Provider(name, Recorder(name), rate_per_second=50, rate_headroom=0.1)  # 45 in any second
    sent, plan = keys.provider_sent(name), keys.provider_rate(name)

    async def run() -> None:
        client = async_client(redis_url)
        health = RedisHealth(client)
        try:
            # Bigger than the limit: it goes, alone in the window.
            assert await health.gate(limited, 100, 5.0) == (True, 0.0)
            assert rdb.zcard(sent) == 100 and 0 < rdb.pttl(sent) <= 2000
            # Two late senders: the first may go when the batch has left the window, the second one
            # interval after it (not at the same moment); neither is counted yet.
            first, second = await health.gate(limited, 1, 5.0), await health.gate(limited, 1, 5.0)
            assert first[0] and 0.9 < first[1] <= 1.0
            assert second[0] and 0.01 < second[1] - first[1] <= 1 / 45 + 0.001
            assert rdb.zcard(sent) == 100
            # One that may wait only half a second is told when to come back, and takes no slot.
            taken = rdb.get(plan)
            room, after = await health.gate(limited, 1, 0.5)
            assert not room and 0.4 < after <= 0.6
            assert rdb.get(plan) == taken and rdb.zcard(sent) == 100
        finally:
            await client.aclose()
        # An unlimited provider is not even asked about: a client with nowhere to connect still passes.
        nowhere = aioredis.Redis(host="127.0.0.1", port=free_port())
        unlimited = Provider("free", Recorder("free"))
        try:
            assert await RedisHealth(nowhere).gate(unlimited, 10, 1.0) == (True, 0.0)
            assert await RedisHealth(nowhere).reserve(unlimited, 10, 1.0) == (True, 0.0)
        finally:
            await nowhere.aclose()

    asyncio.run(run())
