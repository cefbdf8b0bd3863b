"""The audit store: append-only, hash-chained per tenant; SQLite by default, PostgreSQL by URL.

Each stored event carries ``prev_hash`` (the previous event's hash, ``GENESIS`` for a tenant's first)
and ``hash = SHA-256(prev_hash + canonical form)``, where the canonical form holds the event's position
(``seq``) and every stored field. Changing, removing, inserting or reordering a stored event breaks the
chain at that event; removing the newest ones is caught by the head kept beside the table and by the
anchor the consumer keeps in Redis (``chain``). Pruning (retention) first records a checkpoint, the hash of the
last event it removes, so the rest stays verifiable. Updates and deletions that are not pruning are
refused by triggers in the database itself.

Both backends share the SQL below (written with ``?``; PostgreSQL's driver wants ``%s``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.audit import memberindex
from gateway.audit.chain import COLUMNS, GENESIS, ChainWalk, StoredEvent, chain_hash, row_values, stored_event
from gateway.audit.stream import AuditRow

_INSERT = f"INSERT INTO audit_events ({COLUMNS}) VALUES ({','.join('?' * 12)})"  # noqa: S608 - constants only


@dataclass
class Appended:
    """What one append did: rows stored, duplicates skipped, and each touched tenant's new head."""

    stored: int = 0
    duplicates: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class AuditStore:
    """Shared logic; ``SqliteAuditStore`` and ``PostgresAuditStore`` supply connections and locking."""

    placeholder = "?"

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    # -- connections ------------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, cur: Cursor) -> None:
        """Start a write transaction that excludes other writers of the chain heads."""
        raise NotImplementedError

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._all.append(conn)
        return conn

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):  # a connection another thread already broke
                conn.close()
        self._local = threading.local()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        finally:
            cur.close()
        conn.commit()  # ends the read transaction (PostgreSQL opens one for every statement)
        return list(rows)

    # -- writing ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        """A write transaction (heads locked as they are read), committed or rolled back whole."""
        conn = self._conn()
        cur = conn.cursor()
        try:
            self._begin(cur)
            yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()

    def append(self, rows: Sequence[AuditRow]) -> Appended:
        """Store rows in order, each tenant's chain extended; rows whose event id is stored are skipped."""
        result = Appended()
        if not rows:
            return result
        by_tenant: dict[str, list[AuditRow]] = {}
        for row in rows:
            by_tenant.setdefault(row.tenant, []).append(row)
        with self._transaction() as cur:
            for tenant, trows in by_tenant.items():
                seq, prev = self._locked_head(cur, tenant)
                seen = self._stored_ids(cur, tenant, [r.event_id for r in trows])
                values = []
                for r in trows:
                    if r.event_id in seen:
                        result.duplicates += 1
                        continue
                    seen.add(r.event_id)
                    seq += 1
                    digest = chain_hash(prev, tenant, seq, r)
                    values.append(row_values(r, seq, prev, digest))
                    prev = digest
                if values:
                    self._insert(cur, values)
                    memberindex.add_heads(cur, self._sql, values, self.placeholder != "?")
                    cur.execute(
                        self._sql("UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant = ?"),
                        (seq, prev, tenant),
                    )
                    result.stored += len(values)
                result.heads[tenant] = (seq, prev)
        return result

    def _insert(self, cur: Any, values: list[tuple[Any, ...]]) -> None:
        cur.executemany(self._sql(_INSERT), values)

    def _locked_head(self, cur: Cursor, tenant: str) -> tuple[int, str]:
        cur.execute(
            self._sql(
                "INSERT INTO audit_heads (tenant, seq, hash) VALUES (?, 0, ?) ON CONFLICT (tenant) DO NOTHING"
            ),
            (tenant, GENESIS),
        )
        cur.execute(
            self._sql("SELECT seq, hash FROM audit_heads WHERE tenant = ?" + self._for_update()),  # noqa: S608
            (tenant,),
        )
        seq, digest = cur.fetchone()
        return int(seq), str(digest)

    def _for_update(self) -> str:
        return ""

    def _stored_ids(self, cur: Cursor, tenant: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                self._sql(f"SELECT event_id FROM audit_events WHERE tenant = ? AND event_id IN ({marks})"),  # noqa: S608
                (tenant, *chunk),
            )
            found.update(r[0] for r in cur.fetchall())
        return found

    def prune(self, before_ms: int, now_ms: int) -> int:
        """Remove events older than ``before_ms`` behind a checkpoint; returns how many were removed."""
        removed = 0
        for tenant in self.tenants():
            with self._transaction() as cur:
                head_seq, _ = self._locked_head(cur, tenant)
                cur.execute(
                    self._sql("SELECT MIN(seq) FROM audit_events WHERE tenant = ? AND at_ms >= ?"),
                    (tenant, before_ms),
                )
                first_kept = cur.fetchone()[0]
                cut = head_seq if first_kept is None else int(first_kept) - 1
                start, _ = self._checkpoint(cur, tenant)
                if cut > start:
                    cur.execute(
                        self._sql("SELECT hash FROM audit_events WHERE tenant = ? AND seq = ?"), (tenant, cut)
                    )
                    digest = cur.fetchone()[0]
                    cur.execute(
                        self._sql(
                            "INSERT INTO audit_checkpoints (tenant, seq, hash, created_ms) VALUES (?, ?, ?, ?)"
                        ),
                        (tenant, cut, digest, now_ms),
                    )
                    cur.execute(
                        self._sql("DELETE FROM audit_events WHERE tenant = ? AND seq <= ?"), (tenant, cut)
                    )
                    cur.execute(self._sql(memberindex.PRUNE), (tenant, cut))
                    removed += cut - start
        return removed

    def _checkpoint(self, cur: Cursor, tenant: str) -> tuple[int, str]:
        cur.execute(
            self._sql("SELECT seq, hash FROM audit_checkpoints WHERE tenant = ? ORDER BY seq DESC LIMIT 1"),
            (tenant,),
        )
        row = cur.fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    # -- reading ----------------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        """Tenants with a chain."""
        return sorted(str(r[0]) for r in self._read("SELECT tenant FROM audit_heads"))

    def head(self, tenant: str) -> tuple[int, str]:
        """(seq, hash) of a tenant's newest stored event; (0, GENESIS) before the first."""
        rows = self._read("SELECT seq, hash FROM audit_heads WHERE tenant = ?", (tenant,))
        return (0, GENESIS) if not rows else (int(rows[0][0]), str(rows[0][1]))

    def count(self, tenant: str | None = None) -> int:
        """How many events are stored (for one tenant or all)."""
        if tenant is None:
            return int(self._read("SELECT COUNT(*) FROM audit_events")[0][0])
        return int(self._read("SELECT COUNT(*) FROM audit_events WHERE tenant = ?", (tenant,))[0][0])

    def seq_bounds(self, tenant: str, since_ms: int | None, until_ms: int | None) -> tuple[int, int] | None:
        """The first and last seq whose events fall in a time range (None: nothing in it)."""
        lo = self._read(
            "SELECT MIN(seq) FROM audit_events WHERE tenant = ? AND at_ms >= ?",
            (tenant, since_ms if since_ms is not None else -(2**62)),
        )[0][0]
        hi = self._read(
            "SELECT MAX(seq) FROM audit_events WHERE tenant = ? AND at_ms <= ?",
            (tenant, until_ms if until_ms is not None else 2**62),
        )[0][0]
        if lo is None or hi is None or int(lo) > int(hi):
            return None
        return int(lo), int(hi)

    def search(
        self,
        tenant: str,
        *,
        member: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        types: Sequence[str] = (),
        after_seq: int = 0,
        limit: int = 100,
        before_seq: int | None = None,
        descending: bool = False,
    ) -> list[StoredEvent]:
        """A tenant's events in chain order (newest first when ``descending``), filtered, between
        positions (cursor paging: after ``after_seq``, before ``before_seq``)."""
        # A member's search starts from its heads: its filters are written so that no planner takes
        # them for an index (that walks every event of the type or time).
        at, kind = ("at_ms + 0", "type || ''") if member is not None else ("at_ms", "type")
        where = ["tenant = ?", "seq > ?"]
        params: list[Any] = [tenant, after_seq]
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        if since_ms is not None or until_ms is not None:
            bounds = self.seq_bounds(tenant, since_ms, until_ms)
            if bounds is None:
                return []
            where.append("seq BETWEEN ? AND ?")
            params += bounds
            if since_ms is not None:
                where.append(f"{at} >= ?")
                params.append(since_ms)
            if until_ms is not None:
                where.append(f"{at} <= ?")
                params.append(until_ms)
        if types:
            where.append(f"{kind} IN ({','.join('?' * len(types))})")
            params += types
        # Only placeholders are joined in: every value is a parameter.
        order = "DESC" if descending else "ASC"
        cond = " AND ".join(where)
        select = f"SELECT {COLUMNS} FROM audit_events WHERE {cond}"  # noqa: S608
        if member is not None:
            select = memberindex.search_sql(COLUMNS, cond)
            params = [tenant, member, *params, tenant, member, *params]
        sql = f"{select} ORDER BY seq {order} LIMIT ?"
        return [stored_event(r) for r in self._read(sql, (*params, limit))]

    def recent(
        self,
        tenant: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        types: Sequence[str] = (),
        before: tuple[int, int] | None = None,
        limit: int = 50,
    ) -> list[StoredEvent]:
        """A tenant's events newest first by time (then position), in a time window, before a
        ``(at_ms, seq)`` cursor: one walk of the time index, whatever the window holds."""
        where = ["tenant = ?", "at_ms >= ?", "at_ms <= ?"]
        params: list[Any] = [
            tenant,
            -(2**62) if since_ms is None else since_ms,
            2**62 if until_ms is None else until_ms,
        ]
        if before is not None:
            where.append("(at_ms < ? OR (at_ms = ? AND seq < ?))")
            params += [before[0], before[0], before[1]]
        if types:
            where.append(f"type IN ({','.join('?' * len(types))})")
            params += types
        sql = f"SELECT {COLUMNS} FROM audit_events WHERE {' AND '.join(where)} ORDER BY at_ms DESC, seq DESC LIMIT ?"  # noqa: S608
        return [stored_event(r) for r in self._read(sql, (*params, limit))]

    def iter_events(
        self, tenant: str, *, since_ms: int | None = None, until_ms: int | None = None, page: int = 5000
    ) -> Iterator[list[StoredEvent]]:
        """Pages of a tenant's events in chain order (flat memory for any size)."""
        after = 0
        while True:
            rows = self.search(tenant, since_ms=since_ms, until_ms=until_ms, after_seq=after, limit=page)
            if not rows:
                return
            yield rows
            after = rows[-1].seq

    def verify(
        self,
        tenant: str,
        *,
        anchor: tuple[int, str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> dict[str, Any]:
        """Walk a tenant's chain: ``{"ok": true, "checked": n}`` or the first broken link.

        ``anchor``: the (seq, hash) the consumer last stored, kept outside this store (Redis). With a
        time range only the events in it are checked, starting from the stored hash before them.
        """
        cur = self._conn().cursor()
        try:
            start_seq, prev = self._checkpoint(cur, tenant)
        finally:
            cur.close()
        self._conn().commit()
        walk = ChainWalk(tenant, start_seq, prev)
        hi: int | None = None
        if since_ms is not None or until_ms is not None:
            bounds = self.seq_bounds(tenant, since_ms, until_ms)
            if bounds is None:
                return {"ok": True, "checked": 0}
            lo, hi = bounds
            if lo - 1 > start_seq and (before := self._hash_at(tenant, lo - 1)) is not None:
                walk = ChainWalk(tenant, lo - 1, before)
        while True:
            sql = f"SELECT {COLUMNS} FROM audit_events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT 5000"  # noqa: S608
            rows = [stored_event(r) for r in self._read(sql, (tenant, walk.last))]
            if hi is not None:
                rows = [r for r in rows if r.seq <= hi]
            if (bad := walk.take(rows)) is not None:
                return bad
            if not rows or (hi is not None and walk.last >= hi):
                break
        if hi is not None:
            return walk.ok()
        return self._check_marks(walk, start_seq, anchor)

    def _hash_at(self, tenant: str, seq: int) -> str | None:
        rows = self._read("SELECT hash FROM audit_events WHERE tenant = ? AND seq = ?", (tenant, seq))
        return str(rows[0][0]) if rows else None

    def _check_marks(self, walk: ChainWalk, start_seq: int, anchor: tuple[int, str] | None) -> dict[str, Any]:
        """The walked chain against the head beside the table and the anchor kept in Redis."""
        tenant, last = walk.tenant, walk.last
        head_seq, head_hash = self.head(tenant)
        for name, mark in (("head", (head_seq, head_hash)), ("anchor", anchor)):
            if mark is None or mark[0] <= start_seq:
                continue
            seq, digest = mark
            if seq > last:
                return walk.broken(
                    last + 1, None, "truncated", f"the {name} names event {seq}, the store ends at {last}"
                )
            if self._hash_at(tenant, seq) != digest:
                return walk.broken(
                    seq, None, "altered", f"event {seq} does not have the hash the {name} recorded"
                )
        if head_seq != last:
            return walk.broken(
                head_seq + 1, None, "unrecorded", f"events after {head_seq} are not in the head"
            )
        return walk.ok()
