"""A member's audit events on both backends: found from the member's heads (its events without a
notification, each notification's first), whatever batch or prune split them, and rebuilt for a log
stored before the member index."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.backends import open_store
from gateway.audit.chain import StoredEvent
from gateway.audit.store import AuditStore
from gateway.audit.stream import AuditRow
from tests.auditdb import Backend, make_backend

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
DAY = 86_400_000
A, B = "7d1c0a6f3b2e4d5c8a9b0c1d2e3f4a5b", "0f9e8d7c6b5a49382716051423324150"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Iterator[AuditStore]:
    s = open_store(backend.url)
    yield s
    s.close()


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


def test_a_member_search_reads_the_heads_not_the_chain(store: AuditStore, backend: Backend) -> None:
    if backend.kind != "sqlite":
        pytest.skip("the plan is SQLite's (PostgreSQL plans by its statistics)")
    log = Log()
    store.append([log.row("accepted", f"ntf_{i:04d}", member=f"{i % 7:032x}") for i in range(50)])
    sql: list[str] = []
    read = store._read

    def spy(query: str, params: Sequence[Any] = ()) -> list[Any]:
        sql.append(query)
        return read(query, params)

    store._read = spy  # type: ignore[method-assign]
    store.search("acme", member=A, types=["sent"], since_ms=NOW_MS, until_ms=NOW_MS + 10**9, limit=10)
    query = sql[-1]
    plan = " | ".join(
        str(r[3]) for r in backend.raw("EXPLAIN QUERY PLAN " + query, ("x",) * query.count("?"))
    )
    assert "audit_member_heads" in plan and "audit_events_notification" in plan, plan
    # No walk of the tenant's chain, its time or its type index.
    assert "SCAN audit_events" not in plan and "(tenant=?)" not in plan, plan
    assert "audit_events_time" not in plan and "audit_events_type" not in plan, plan
