"""Notification state in Redis: every state change is one Lua script, one round trip."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from gateway.models import Status
from gateway.state import keys, scripts
from gateway.state.clusterpipe import ClusterPipe
from gateway.state.lookups import Lookups
from gateway.state.record import Notification, decode_record, record_of_reply
from gateway.state.record import text_of as _s
from gateway.state.scriptpipe import ScriptPipe
from gateway.timeutil import system_clock

_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Claimed:
    """A notification a worker now owns for one attempt."""

    id: str
    attempt: int
    record: Notification


@dataclass
class Claim:
    """What a claim found: notifications to send, ones not due yet (id -> time), ones opted out meanwhile,
    ones whose series ended meanwhile."""

    claimed: list[Claimed]
    not_due: dict[str, float]
    opted_out: list[str]
    series_ended: list[str] = field(default_factory=list)  # steps of a series that ended: cancelled


@dataclass(frozen=True)
class Outcome:
    """What one attempt did, to be written back."""

    id: str
    attempt: int
    kind: str  # sent | retry | defer | failed | dead | suppressed
    event: str
    fields: Mapping[str, str]
    lease_score: float = 0.0


class Store(Lookups):
    """Async access to notification state (used by the API and by workers)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        record_ttl: int,
        idempotency_ttl: int,
        pipe: ScriptPipe | None = None,
        max_held: int = 5_000_000,
        cluster: ClusterPipe | None = None,
    ) -> None:
        self.redis = redis
        self.max_held = max_held
        self.pipe = pipe
        self.cluster = cluster  # on a Cluster: the pipelined scripts go through it, routed by slot
        self.record_ttl = record_ttl
        self.idempotency_ttl = idempotency_ttl
        # As the accept script takes them, made once.
        self._record_ttl, self._idempotency_ttl = str(record_ttl), str(idempotency_ttl)
        self._max_held = str(max_held)
        self._idem_reserve = redis.register_script(scripts.IDEM_RESERVE)
        self._claim = redis.register_script(scripts.CLAIM)
        self._cancel = redis.register_script(scripts.CANCEL)
        self._replay = redis.register_script(scripts.REPLAY)
        self._append_event = redis.register_script(scripts.APPEND_EVENT)
        self._shas: dict[str, str | None] = {}

    # -- accept ---------------------------------------------------------------------------------
    def accept_args(
        self,
        tenant: str,
        record: Mapping[str, str],
        *,
        doc: bytes,
        events: Sequence[str],
        lease_score: float | None,
        final: bool,
        idem_key: str | None,
        idem_record: str,
        state: tuple[str, Sequence[str], str, int, int] = ("", (), "", 0, 0),
        suppressions: Sequence[str] = (),
        attribution: tuple[str, str] = ("", ""),
    ) -> tuple[list[str], list[str | bytes]]:
        """KEYS and ARGV of the accept script (so a batch can pipeline many).

        ``record``: its first fields are ``id``, ``member``, ``masked`` and ``channel`` (the audit
        entry's, read by position). ``suppressions``: none, or what an opt-out and a full cap would
        write (reasons, two events, the stored answer; four strings each), decided by the state rules
        in Python.
        """
        ntf_id = record["id"]
        channel = record["channel"]
        ntf_key, events_key, leases, ready_key, held_key, audit_key = keys.accept_keys(
            tenant, ntf_id, channel
        )
        idem = keys.idempotency(tenant, idem_key) if idem_key else ntf_key
        optout_key, scopes, cap_key, cap_limit, cap_ttl = state
        key_list = [idem, ntf_key, events_key, leases, ready_key, optout_key or ntf_key, cap_key or ntf_key]
        key_list += (held_key, audit_key, attribution[0] or ntf_key, attribution[1] or ntf_key)
        status = record["status"]
        ready = (
            "1" if status == Status.QUEUED else record["not_before"] if status == Status.SCHEDULED else "0"
        )
        args: list[str | bytes] = [
            "1" if idem_key else "0",
            idem_record,
            self._idempotency_ttl,
            ntf_id,
            "" if lease_score is None else repr(lease_score),
            self._record_ttl if final else "",
            ready,
            str(cap_limit),
            str(cap_ttl),
            self._record_ttl,
            self._max_held,
            str(len(suppressions)),
            *suppressions,
            str(len(scopes)),
            *scopes,
            str(len(events)),
            *events,
        ]
        for name, value in record.items():
            args += (name, value)
        args += ("doc", doc)  # bytes as they are: no decode and re-encode of the largest argument
        return key_list, args

    async def accept(self, k: list[str], a: list[str | bytes]) -> tuple[str, str]:
        """Run the accept script: ('new', decision) or ('dup', stored idempotency record)."""
        if self.pipe is None:
            return (await self.accept_many([(k, a)]))[0]
        res = await self.pipe.call(k, a)
        return _s(res[0]), _s(res[1])

    async def accept_many(
        self, calls: Sequence[tuple[list[str], list[str | bytes]]]
    ) -> list[tuple[str, str]]:
        """Pipeline many accept scripts in one round trip."""
        if not calls:
            return []
        results = await self._evalsha_many(scripts.ACCEPT, calls)
        return [(_s(r[0]), _s(r[1])) for r in results]

    async def run_many(self, source: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """Run one of ``scripts`` once per (keys, args) call, in one round trip."""
        return await self._evalsha_many(source, calls)

    async def _evalsha_many(
        self, source: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """EVALSHA a script once per call in one pipeline: the lean script pipe where there is one
        (a tenth of redis-py's cost per call), else redis-py's.

        redis-py's pipelined Script objects ask SCRIPT EXISTS before every pipeline (an extra round
        trip); we load once and reload only when Redis says NOSCRIPT (after a restart or flush).
        """
        if self.cluster is not None:
            return await self.cluster.run_many(source, calls)
        if self.pipe is not None:
            return await self.pipe.call_many(source, calls)
        sha = self._shas.get(source)
        for attempt in (1, 2):
            if sha is None:
                sha = self._shas[source] = _s(await self.redis.script_load(source))
            async with self.redis.pipeline(transaction=False) as pipe:
                for k, a in calls:
                    pipe.evalsha(sha, len(k), *k, *a)
                results = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                sha = None
                continue
            for r in results:
                if isinstance(r, Exception):
                    raise r
            return list(results)
        raise AssertionError("unreachable")

    async def state_check(
        self, optout_key: str, scopes: Sequence[str], cap_key: str, cap_limit: int
    ) -> str | None:
        """Read-only opt-out and cap test: 'opted_out', 'frequency_cap' or None."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(optout_key or "-", list(scopes) or ["-"])
            pipe.get(cap_key or "-")
            found, used = await pipe.execute()
        if scopes and any(v is not None for v in found):
            return "opted_out"
        if cap_key and int(used or 0) >= cap_limit:
            return "frequency_cap"
        return None

    async def idempotency_reserve(self, tenant: str, key: str, pending: str) -> str | None:
        """Reserve a key with a pending record; the existing record if there is one."""
        res = await self._idem_reserve(keys=[keys.idempotency(tenant, key)], args=[pending, 60])
        return None if res is None else _s(res)

    async def idempotency_complete(self, tenant: str, key: str, record: str) -> None:
        """Store the final response for a key."""
        await self.redis.set(keys.idempotency(tenant, key), record, ex=self.idempotency_ttl)

    async def idempotency_release(self, tenant: str, key: str) -> None:
        """Drop a pending reservation (the request did not get to do anything)."""
        await self.redis.delete(keys.idempotency(tenant, key))

    # -- read -----------------------------------------------------------------------------------
    async def get(self, tenant: str, ntf_id: str) -> tuple[Notification, list[dict[str, Any]]] | None:
        """The record and its events, or None."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.notification(tenant, ntf_id))
            pipe.lrange(keys.events(tenant, ntf_id), 0, -1)
            raw, evs = await pipe.execute()
        if not raw:
            return None
        return decode_record(raw), [msgspec.json.decode(e) for e in evs]

    # -- worker ---------------------------------------------------------------------------------
    async def claim(
        self,
        tenant: str,
        ids: Sequence[str],
        now: float,
        lease_until: float,
        *,
        scopes: Callable[[str, str], Sequence[str]],
        suppression: tuple[str, str, str],
        series_ended: tuple[str, str, str, str] = ("[]", "{}", "[]", "{}"),
        series_step: Callable[[str, str], str] = lambda series, ntf_id: "",
    ) -> Claim:
        """Take ownership of the due notifications among ids for one attempt (after the dispatch checks).

        ``scopes(brand, channel)`` are the opt-out scopes to test; ``suppression`` is what an opt-out
        since accept writes (reasons, compliance event, suppressed event); ``series_ended`` what a step
        of an exited, then of a cancelled, series writes (reasons, cancelled event for each), and
        ``series_step(series id, notification id)`` the series' own audit event for that step.
        """
        if not ids:
            return Claim([], {}, [])
        # The keys a claim touches depend on each notification's member, cap month and series: read
        # them first (they never change after accept), so the script is handed every key it touches.
        looked_up = await self.hmget_many(
            [keys.notification(tenant, i) for i in ids],
            ("member", "brand", "channel", "cap_key", "series", "series_step"),
        )
        k = [keys.leases(tenant), keys.audit(tenant)]
        args: list[str | int] = [repr(now), repr(lease_until), self.record_ttl, *suppression, *series_ended]
        for ntf_id, (member, brand, channel, cap_key, series, step) in zip(ids, looked_up, strict=True):
            ntf_key = keys.notification(tenant, ntf_id)
            k += (
                ntf_key,
                keys.events(tenant, ntf_id),
                keys.optouts(tenant, _s(member)) if member else ntf_key,
                _s(cap_key) if cap_key else ntf_key,
                keys.series(tenant, _s(series)) if series else ntf_key,
            )
            tested = scopes(_s(brand or b""), _s(channel)) if member and channel else ()
            said = series_step(_s(series), ntf_id) if series else ""
            args += (ntf_id, _s(step) if step else "", said, len(tested), *tested)
        if self.pipe is not None:
            res = (await self.pipe.call_many(scripts.CLAIM, [(k, args)]))[0]
        else:
            res = await self._claim(keys=k, args=args)
        claim = Claim([], {}, [])
        for ntf_id, attempt, flat in res:
            if int(attempt) == -1:
                claim.not_due[_s(ntf_id)] = float(_s(flat[1]))
            elif int(attempt) == -2:
                claim.opted_out.append(_s(ntf_id))
            elif int(attempt) == -3:
                claim.series_ended.append(_s(ntf_id))
            else:
                record = record_of_reply(flat)
                claim.claimed.append(Claimed(_s(ntf_id), int(attempt), record))
        return claim

    async def record_outcomes(
        self, tenant: str, outcomes: Iterable[Outcome], now: float, cap_keys: Mapping[str, str]
    ) -> list[str]:
        """Write each attempt's outcome; returns what each script did (sent/delivered/.../stale).

        ``cap_keys``: each notification's monthly-cap counter (from its record), which a final outcome
        other than sent gives its slot back to.
        """
        outcomes = list(outcomes)
        if not outcomes:
            return []
        calls = []
        for o in outcomes:
            flat: list[str] = []
            for k, v in o.fields.items():
                flat += (k, v)
            calls.append(
                (
                    [
                        keys.notification(tenant, o.id),
                        keys.events(tenant, o.id),
                        keys.leases(tenant),
                        keys.dead_letters(tenant),
                        keys.audit(tenant),
                        cap_keys.get(o.id) or keys.notification(tenant, o.id),
                    ],
                    [
                        o.attempt,
                        o.kind,
                        repr(now),
                        o.event,
                        repr(o.lease_score),
                        self.record_ttl,
                        o.id,
                        *flat,
                    ],
                )
            )
        return [_s(r) for r in await self._evalsha_many(scripts.OUTCOME, calls)]

    async def append_event(self, tenant: str, ntf_id: str, ev: str) -> None:
        """Add an event to a notification's timeline (and to the audit stream)."""
        await self._append_event(
            keys=[keys.notification(tenant, ntf_id), keys.events(tenant, ntf_id), keys.audit(tenant)],
            args=[ev],
        )

    async def receipts(
        self, items: Sequence[tuple[str, str, str, str, Mapping[str, str]]]
    ) -> list[tuple[str, float | None]]:
        """Apply (tenant, id, final status, event, fields) receipts in one round trip; each returns
        delivered/undelivered (with the notification's accept time) or early/duplicate/unknown/ignored."""
        now = repr(system_clock())
        calls = []
        for tenant, ntf_id, status, ev, fields in items:
            flat: list[str] = []
            for k, v in fields.items():
                flat += (k, v)
            calls.append(
                (
                    [keys.notification(tenant, ntf_id), keys.events(tenant, ntf_id), keys.audit(tenant)],
                    [status, ev, now, self.record_ttl, *flat],
                )
            )
        if not calls:
            return []
        out: list[tuple[str, float | None]] = []
        for r in await self._evalsha_many(scripts.RECEIPT, calls):
            if isinstance(r, list):
                out.append((_s(r[0]), float(_s(r[1])) if r[1] else None))
            else:
                out.append((_s(r), None))
        return out

    async def cancel(self, tenant: str, ntf_id: str, ev: str) -> str:
        """Cancel a queued or scheduled notification; returns 'ok', 'unknown' or the status that prevents it."""
        ntf_key = keys.notification(tenant, ntf_id)
        cap_key = await self.redis.hget(ntf_key, "cap_key")  # set at accept, never changed
        res = await self._cancel(
            keys=[
                ntf_key,
                keys.events(tenant, ntf_id),
                keys.leases(tenant),
                keys.audit(tenant),
                _s(cap_key) if cap_key else ntf_key,
            ],
            args=[ev, repr(system_clock()), self.record_ttl],
        )
        return _s(res)

    async def replay(self, tenant: str, ntf_id: str, ev: str, now: float, lease_score: float) -> str:
        """Put a dead letter back in the queue."""
        res = await self._replay(
            keys=[
                keys.notification(tenant, ntf_id),
                keys.events(tenant, ntf_id),
                keys.leases(tenant),
                keys.dead_letters(tenant),
                keys.audit(tenant),
            ],
            args=[ev, repr(now), repr(lease_score), f"{ntf_id}"],
        )
        return _s(res)
