"""The audit store on both backends: chain, deduplication, append-only guards, tamper detection, pruning."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit.backends import open_store
from gateway.audit.chain import GENESIS, chain_hash
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
