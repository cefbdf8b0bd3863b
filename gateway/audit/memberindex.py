"""The member index: how a member's events are found without indexing every event by member.

A member is a keyed hash, so an index on every event's member took each event at a random place in
the file: a wave's commits dirtied about a page per event, and storing slowed as the log grew
(campaign-shaped events, 2,000,000: 31,951/s against 69,220/s with this). ``audit_member_heads``
holds one row per notification (its first stored event with a member) and one per event that
carries a member without a notification (opt-outs, replies). A member's events are those rows'
events, a notification's read through the ``(tenant, notification_id, seq)`` index; notification
ids are time-ordered, so that index grows near its end.

The heads are an index, not part of the chain: ``verify`` does not read them. Pruning removes the
heads of what it removed whole; a notification pruned in part keeps its head, so its later events
are still found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

# A notification's head is its first stored event with a member: a later one's insert finds the
# notification's head in the unique index and does nothing (no look-up before).
INSERT = (
    "INSERT INTO audit_member_heads (tenant, member, seq, notification_id) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
# PostgreSQL: a batch in one statement.
INSERT_ARRAYS = (
    "INSERT INTO audit_member_heads (tenant, member, seq, notification_id)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[]) ON CONFLICT DO NOTHING"
)

# A log stored before the member index: its heads, once, when the table is new.
_BACKFILL = [
    "INSERT INTO audit_member_heads (tenant, member, seq, notification_id)"
    " SELECT tenant, member, seq, '' FROM audit_events WHERE member <> '' AND notification_id = ''",
    "INSERT INTO audit_member_heads (tenant, member, seq, notification_id)"
    " SELECT e.tenant, e.member, e.seq, e.notification_id FROM audit_events e JOIN"
    " (SELECT tenant, notification_id, MIN(seq) AS first FROM audit_events"
    "  WHERE member <> '' AND notification_id <> '' GROUP BY tenant, notification_id) f"
    " ON e.tenant = f.tenant AND e.seq = f.first",
]

# After pruning up to a seq: the heads whose events are all gone.
PRUNE = (
    "DELETE FROM audit_member_heads WHERE tenant = ? AND seq <= ? AND (notification_id = '' OR NOT EXISTS"
    " (SELECT 1 FROM audit_events e WHERE e.tenant = audit_member_heads.tenant"
    " AND e.notification_id = audit_member_heads.notification_id))"
)


_HEADS = "SELECT {} AS head FROM audit_member_heads WHERE tenant = ? AND member = ? AND notification_id {}"


def search_sql(columns: str, cond: str) -> str:
    """A member's events matching ``cond`` (on audit_events), in two selects merged by the caller's
    ORDER BY. Parameters: tenant, member, then cond's; twice. Each select starts from the member's
    heads (CROSS JOIN keeps SQLite's planner in that order; else it walks the tenant's whole chain)."""
    own = _HEADS.format("seq", "= ''")
    notified = _HEADS.format("notification_id", "<> ''")
    return (
        f"SELECT {columns} FROM ({own}) AS h CROSS JOIN audit_events WHERE {cond} AND seq = head"  # noqa: S608
        f" UNION ALL SELECT {columns} FROM ({notified}) AS h"
        f" CROSS JOIN audit_events WHERE {cond} AND notification_id = head"
    )


def new_heads(values: Iterable[Sequence[Any]]) -> list[tuple[str, str, int, str]]:
    """(tenant, member, seq, notification id) for each row with a member (``row_values`` order:
    tenant, seq, _, _, _, notification_id, _, member, ...) and no notification, and for the first
    row with a member of each notification in ``values``."""
    out = []
    seen: set[str] = set()
    for v in values:
        member, ntf = v[7], v[5]
        if not member or ntf in seen:
            continue
        if ntf:
            seen.add(ntf)
        out.append((v[0], member, v[1], ntf))
    return out


def add_heads(
    cur: Any, sql: Callable[[str], str], values: list[tuple[Any, ...]], arrays: bool = False
) -> None:
    """Store the heads of newly stored rows (``row_values`` tuples), in the append's transaction.
    ``arrays``: as one statement of arrays (PostgreSQL)."""
    heads = new_heads(values)
    if not heads:
        return
    if arrays:
        cur.execute(INSERT_ARRAYS, [list(column) for column in zip(*heads, strict=True)])
    else:
        cur.executemany(sql(INSERT), heads)


def index_old_events(cur: Any) -> None:
    """Heads for a log stored before the member index: while the table is empty and some event has
    a member (so emptying the table rebuilds it at the next start)."""
    cur.execute("SELECT 1 FROM audit_member_heads LIMIT 1")
    if cur.fetchone() is None:
        cur.execute("SELECT 1 FROM audit_events WHERE member <> '' LIMIT 1")
        if cur.fetchone() is not None:
            for statement in _BACKFILL:
                cur.execute(statement)
