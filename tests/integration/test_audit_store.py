"""The audit store on both backends: chain, deduplication, append-only guards, tamper detection, pruning,
and a member's events found from its heads (its events without a notification, each notification's
first) whatever batch or prune split them, rebuilt for a log stored before the member index."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.backends import open_store
from gateway.audit.chain import GENESIS, StoredEvent, chain_hash
from gateway.audit.store import AuditStore
from gateway.audit.stream import AuditRow
from tests.auditdb import Backend, make_backend

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Iterator[AuditStore]:
    s = open_store(backend.url)
    yield s
    s.close()


def row(
    i: int, *, tenant: str = "acme", member: str = "m-a", kind: str = "accepted", at_ms: int | None = None
) -> AuditRow:
    return AuditRow(
        tenant=tenant,
        event_id=f"{1000 + i}-0.0",
        at_ms=NOW_MS + i if at_ms is None else at_ms,
        type=kind,
        notification_id=f"ntf_{i:026d}",
        channel="sms",
        member=member,
        address="+86138****5678",
        body=f'{{"n":{i},"type":"{kind}"}}',
    )


def test_events_are_chained_per_tenant_and_redelivered_ones_are_skipped(store: AuditStore) -> None:
    first = store.append([row(i) for i in range(5)] + [row(0, tenant="other")])
    assert (first.stored, first.duplicates) == (6, 0)
    # At-least-once delivery: the same events again (plus one new) store only the new one.
    again = store.append([row(i) for i in range(6)])
    assert (again.stored, again.duplicates) == (1, 5)
    assert store.count("acme") == 6 and store.count("other") == 1
    events = store.search("acme", limit=100)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    prev = GENESIS
    for e in events:
        assert e.prev_hash == prev
        assert e.hash == chain_hash(prev, "acme", e.seq, e)
        prev = e.hash
    assert store.head("acme") == (6, prev)
    assert store.verify("acme", anchor=(6, prev)) == {"ok": True, "checked": 6}
    assert store.verify("other") == {"ok": True, "checked": 1}


def test_the_store_refuses_updates_and_deletes_by_itself(store: AuditStore, backend: Backend) -> None:
    store.append([row(i) for i in range(3)])
    with pytest.raises(Exception, match="append-only"):
        backend.raw("UPDATE audit_events SET body = '{}' WHERE seq = 2")
    with pytest.raises(Exception, match="append-only"):
        backend.raw("DELETE FROM audit_events WHERE seq = 3")
    assert store.verify("acme")["ok"] is True


def test_a_changed_event_is_reported_as_the_first_broken_link(store: AuditStore, backend: Backend) -> None:
    store.append([row(i) for i in range(10)])
    backend.disable_guards()
    backend.raw(
        "UPDATE audit_events SET body = ? WHERE tenant = 'acme' AND seq = 7", ('{"n":6,"type":"sent"}',)
    )
    result = store.verify("acme")
    assert result["ok"] is False and result["checked"] == 6
    assert result["broken"]["seq"] == 7 and result["broken"]["reason"] == "altered"
    assert result["broken"]["event_id"] == "1006-0.0"


def test_a_rehashed_change_still_breaks_the_next_link(store: AuditStore, backend: Backend) -> None:
    """An attacker who recomputes the changed event's own hash breaks the following event's prev_hash."""
    store.append([row(i) for i in range(10)])
    backend.disable_guards()
    e = store.search("acme", after_seq=2, limit=1)[0]
    forged = AuditRow(
        "acme", e.event_id, e.at_ms, "suppressed", e.notification_id, e.channel, e.member, e.address, e.body
    )
    backend.raw(
        "UPDATE audit_events SET type = 'suppressed', hash = ? WHERE tenant = 'acme' AND seq = 3",
        (chain_hash(e.prev_hash, "acme", 3, forged),),
    )
    result = store.verify("acme")
    assert result["broken"]["seq"] == 4 and result["broken"]["reason"] == "out_of_order"


def test_reordered_events_are_detected(store: AuditStore, backend: Backend) -> None:
    store.append([row(i) for i in range(10)])
    backend.disable_guards()
    # Swap events 4 and 5 whole (everything but their position).
    backend.raw("UPDATE audit_events SET seq = -4 WHERE tenant = 'acme' AND seq = 4")
    backend.raw("UPDATE audit_events SET seq = 4 WHERE tenant = 'acme' AND seq = 5")
    backend.raw("UPDATE audit_events SET seq = 5 WHERE tenant = 'acme' AND seq = -4")
    result = store.verify("acme")
    assert result["ok"] is False and result["checked"] == 3
    assert result["broken"]["seq"] == 4 and result["broken"]["reason"] == "out_of_order"


def test_a_deleted_event_in_the_middle_is_missing(store: AuditStore, backend: Backend) -> None:
    store.append([row(i) for i in range(10)])
    backend.disable_guards()
    backend.raw("DELETE FROM audit_events WHERE tenant = 'acme' AND seq = 5")
    result = store.verify("acme")
    assert result["broken"]["seq"] == 5 and result["broken"]["reason"] == "missing"


def test_deleting_the_last_event_is_detected_by_the_head_and_by_the_redis_anchor(
    store: AuditStore, backend: Backend
) -> None:
    appended = store.append([row(i) for i in range(10)])
    anchor = appended.heads["acme"]
    backend.disable_guards()
    backend.raw("DELETE FROM audit_events WHERE tenant = 'acme' AND seq = 10")
    result = store.verify("acme", anchor=anchor)
    assert result["ok"] is False and result["checked"] == 9
    assert result["broken"]["seq"] == 10 and result["broken"]["reason"] == "truncated"
    # The attacker also rewinds the head table: the anchor kept in Redis still knows.
    ninth = store.search("acme", after_seq=8, limit=1)[0]
    backend.raw("UPDATE audit_heads SET seq = 9, hash = ? WHERE tenant = 'acme'", (ninth.hash,))
    assert store.verify("acme")["ok"] is True  # without the anchor nothing shows...
    result = store.verify("acme", anchor=anchor)  # ...with it, the loss does
    assert result["broken"]["seq"] == 10 and result["broken"]["reason"] == "truncated"


def test_pruning_keeps_the_rest_verifiable_from_a_checkpoint(store: AuditStore, backend: Backend) -> None:
    day = 86_400_000
    old = [row(i, at_ms=NOW_MS - 200 * day + i) for i in range(5)]
    new = [row(i, at_ms=NOW_MS + i) for i in range(5, 12)]
    anchor = store.append(old + new).heads["acme"]
    assert store.prune(NOW_MS - 183 * day, NOW_MS) == 5
    assert store.count("acme") == 7
    assert store.verify("acme", anchor=anchor) == {"ok": True, "checked": 7}
    assert store.prune(NOW_MS - 183 * day, NOW_MS) == 0  # nothing more is old
    # Deleting behind the checkpoint is what pruning does; in front of it, still refused.
    with pytest.raises(Exception, match="append-only"):
        backend.raw("DELETE FROM audit_events WHERE tenant = 'acme' AND seq = 6")
    backend.disable_guards()
    backend.raw("UPDATE audit_events SET body = '{}' WHERE tenant = 'acme' AND seq = 6")
    assert store.verify("acme")["broken"]["seq"] == 6


def test_search_filters_and_pages(store: AuditStore) -> None:
    rows = [
        row(i, member="m-a" if i % 2 else "m-b", kind="sent" if i % 3 == 0 else "accepted") for i in range(30)
    ]
    store.append(rows)
    mine = store.search("acme", member="m-a", limit=100)
    assert [e.notification_id for e in mine] == [f"ntf_{i:026d}" for i in range(1, 30, 2)]
    sent = store.search("acme", types=["sent"], limit=100)
    assert [e.seq for e in sent] == [i + 1 for i in range(0, 30, 3)]
    window = store.search("acme", since_ms=NOW_MS + 10, until_ms=NOW_MS + 19, limit=100)
    assert [e.seq for e in window] == list(range(11, 21))
    page1 = store.search("acme", limit=12)
    page2 = store.search("acme", after_seq=page1[-1].seq, limit=12)
    page3 = store.search("acme", after_seq=page2[-1].seq, limit=12)
    assert [e.seq for e in page1 + page2 + page3] == list(range(1, 31))
    assert store.search("other", limit=10) == []
    pages = list(store.iter_events("acme", page=7))
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert store.verify("acme", since_ms=NOW_MS + 10, until_ms=NOW_MS + 19) == {"ok": True, "checked": 10}


# -- a member's events ----------------------------------------------------------------------------

DAY = 86_400_000
A, B = "7d1c0a6f3b2e4d5c8a9b0c1d2e3f4a5b", "0f9e8d7c6b5a49382716051423324150"


class Log:
    """Rows as the consumer stores them: event ids from a counter, times as given."""

    def __init__(self) -> None:
        self.n = 0

    def row(self, kind: str, ntf: str = "", member: str = A, at_ms: int | None = None) -> AuditRow:
        self.n += 1
        return AuditRow(
            "acme",
            f"{1_000 + self.n}-0.0",
            NOW_MS + self.n if at_ms is None else at_ms,
            kind,
            ntf,
            "sms" if ntf else "",
            member,
            "+86138****5678" if member else "",
            f'{{"type":"{kind}","n":{self.n}}}',
        )


def kinds(events: list[StoredEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.notification_id) for e in events]


def test_a_members_events_across_batches_with_filters_and_pages(store: AuditStore) -> None:
    log = Log()
    first = [
        log.row("accepted", "ntf_a1"),
        log.row("compliance", "ntf_a1"),
        log.row("accepted", "ntf_b1", member=B),
        log.row("opt_out"),  # the member's own event, no notification
        log.row("template_changed", member=""),
    ]
    later = [
        log.row("attempt", "ntf_a1"),
        log.row("accepted", "ntf_a2"),
        log.row("reply", member=B),
        log.row("receipt", "ntf_a1", member=""),  # the record had expired: no member on the entry
        log.row("click", "ntf_a2"),
    ]
    store.append(first)
    store.append(later)
    assert store.append(first + later).duplicates == 10  # redelivered: no second head either
    mine = store.search("acme", member=A, limit=100)
    assert kinds(mine) == [
        ("accepted", "ntf_a1"),
        ("compliance", "ntf_a1"),
        ("opt_out", ""),
        ("attempt", "ntf_a1"),
        ("accepted", "ntf_a2"),
        ("receipt", "ntf_a1"),
        ("click", "ntf_a2"),
    ]
    assert [e.seq for e in mine] == sorted(e.seq for e in mine)
    assert kinds(store.search("acme", member=B, limit=100)) == [("accepted", "ntf_b1"), ("reply", "")]
    assert store.search("acme", member="f" * 32, limit=100) == []
    assert store.search("other", member=A, limit=100) == []
    # Filters and paging apply to both kinds of events, in both directions.
    assert kinds(store.search("acme", member=A, types=["accepted", "opt_out"], limit=100)) == [
        ("accepted", "ntf_a1"),
        ("opt_out", ""),
        ("accepted", "ntf_a2"),
    ]
    assert kinds(store.search("acme", member=A, descending=True, limit=2)) == [
        ("click", "ntf_a2"),
        ("receipt", "ntf_a1"),
    ]
    page1 = store.search("acme", member=A, limit=3)
    page2 = store.search("acme", member=A, after_seq=page1[-1].seq, limit=3)
    page3 = store.search("acme", member=A, after_seq=page2[-1].seq, limit=3)
    assert page1 + page2 + page3 == mine and len(page3) == 1
    window = store.search("acme", member=A, since_ms=NOW_MS + 3, until_ms=NOW_MS + 9, limit=100)
    assert kinds(window) == [
        ("opt_out", ""),
        ("attempt", "ntf_a1"),
        ("accepted", "ntf_a2"),
        ("receipt", "ntf_a1"),
    ]
    before = store.search("acme", member=A, before_seq=mine[3].seq, descending=True, limit=100)
    assert before == list(reversed(mine[:3]))


def test_pruning_keeps_the_rest_of_a_notification_findable(store: AuditStore, backend: Backend) -> None:
    log = Log()
    old = NOW_MS - 200 * DAY
    store.append(
        [
            log.row("accepted", "ntf_a1", at_ms=old),
            log.row("opt_out", at_ms=old + 1),
            log.row("accepted", "ntf_a2", at_ms=old + 2),
            log.row("sent", "ntf_a2", at_ms=old + 3),
            log.row("accepted", "ntf_b1", member=B),
            log.row("click", "ntf_a1"),  # months later: its notification's first event gets pruned
        ]
    )
    assert store.prune(NOW_MS - 183 * DAY, NOW_MS) == 4
    assert kinds(store.search("acme", member=A, limit=100)) == [("click", "ntf_a1")]
    assert kinds(store.search("acme", member=B, limit=100)) == [("accepted", "ntf_b1")]
    # The heads of what is gone whole went with it; the pruned-in-part notification's stayed.
    heads = backend.raw("SELECT member, notification_id FROM audit_member_heads ORDER BY seq")
    assert [tuple(h) for h in heads] == [(A, "ntf_a1"), (B, "ntf_b1")]


def test_a_log_from_before_the_member_index_gets_its_heads_when_opened(backend: Backend) -> None:
    log = Log()
    rows = [
        log.row("accepted", "ntf_a1"),
        log.row("opt_out"),
        log.row("accepted", "ntf_b1", member=B),
        log.row("sent", "ntf_a1"),
        log.row("receipt", "ntf_a1", member=""),
    ]
    store = open_store(backend.url)
    store.append(rows)
    store.close()
    # The layout before: no heads table, every event indexed by member.
    backend.raw("DROP TABLE audit_member_heads")
    backend.raw("DROP INDEX audit_events_notification")
    backend.raw("CREATE INDEX audit_events_member ON audit_events (tenant, member, seq)")
    store = open_store(backend.url)
    try:
        assert kinds(store.search("acme", member=A, limit=100)) == [
            ("accepted", "ntf_a1"),
            ("opt_out", ""),
            ("sent", "ntf_a1"),
            ("receipt", "ntf_a1"),
        ]
        assert kinds(store.search("acme", member=B, limit=100)) == [("accepted", "ntf_b1")]
        store.append([log.row("click", "ntf_a1")])  # a later event of a backfilled notification
        assert kinds(store.search("acme", member=A, limit=100))[-1] == ("click", "ntf_a1")
    finally:
        store.close()
    if backend.kind == "sqlite":
        names = {r[0] for r in backend.raw("SELECT name FROM sqlite_master WHERE type = 'index'")}
    else:
        names = {
            r[0] for r in backend.raw("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        }
    assert "audit_events_member" not in names
    assert {"audit_events_notification", "audit_member_heads_notification"} <= names
    assert len(backend.raw("SELECT * FROM audit_member_heads")) == 3  # ntf_a1, the opt-out, ntf_b1


def test_a_member_search_reads_the_heads_not_the_chain(tmp_path: Path) -> None:
    # SQLite's plan, which has no statistics to go by (PostgreSQL plans by its own statistics).
    backend = next(make_backend("sqlite", tmp_path))
    store = open_store(backend.url)
    log = Log()
    store.append([log.row("accepted", f"ntf_{i:04d}", member=f"{i % 7:032x}") for i in range(50)])
    sql: list[str] = []
    read = store._read

    def spy(query: str, params: Sequence[Any] = ()) -> list[Any]:
        sql.append(query)
        return read(query, params)

    store._read = spy  # type: ignore[method-assign]
    try:
        store.search("acme", member=A, types=["sent"], since_ms=NOW_MS, until_ms=NOW_MS + 10**9, limit=10)
    finally:
        store.close()
    query = sql[-1]
    plan = " | ".join(
        str(r[3]) for r in backend.raw("EXPLAIN QUERY PLAN " + query, ("x",) * query.count("?"))
    )
    assert "audit_member_heads" in plan and "audit_events_notification" in plan, plan
    # No walk of the tenant's chain, its time or its type index.
    assert "SCAN audit_events" not in plan and "(tenant=?)" not in plan, plan
    assert "audit_events_time" not in plan and "audit_events_type" not in plan, plan
