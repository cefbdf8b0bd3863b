"""The audit store: append-only, hash-chained per tenant; SQLite by default, PostgreSQL by URL.

Each stored event carries ``prev_hash`` (the previous event's hash, ``GENESIS`` for a tenant's first)
and ``hash = SHA-256(prev_hash + canonical form)``, where the canonical form holds the event's position
(``seq``) and every stored field. Changing, removing, inserting or reordering a stored event breaks the
chain at that event; removing the newest ones is caught by the head kept beside the table and by the
anchor the consumer keeps in Redis. Pruning (retention) first records a checkpoint, the hash of the
last event it removes, so the rest stays verifiable. Updates and deletions that are not pruning are
refused by triggers in the database itself.

Both backends share the SQL below (written with ``?``; PostgreSQL's driver wants ``%s``).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from gateway.audit.events import AuditRow

GENESIS = "0" * 64

_canonical = msgspec.json.Encoder()

COLUMNS = (
    "tenant, seq, event_id, at_ms, type, notification_id, channel, member, address, body, prev_hash, hash"
)

_TABLES = [
    """CREATE TABLE IF NOT EXISTS audit_events (
        tenant TEXT NOT NULL,
        seq BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        type TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        member TEXT NOT NULL,
        address TEXT NOT NULL,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (tenant, seq)
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_events_event_id ON audit_events (tenant, event_id)",
    "CREATE INDEX IF NOT EXISTS audit_events_member ON audit_events (tenant, member, seq)",
    "CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (tenant, at_ms)",
    """CREATE TABLE IF NOT EXISTS audit_heads (
        tenant TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_checkpoints (
        tenant TEXT NOT NULL,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, seq)
    )""",
]
_INSERT = f"INSERT INTO audit_events ({COLUMNS}) VALUES ({','.join('?' * 12)})"  # noqa: S608 - constants only

_SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN OLD.seq > COALESCE((SELECT MAX(seq) FROM audit_checkpoints WHERE tenant = OLD.tenant), 0)
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: only pruning behind a checkpoint deletes'); END""",
]

_POSTGRES_GUARDS = [
    """CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'audit_events is append-only';
      END IF;
      IF OLD.seq > COALESCE((SELECT MAX(seq) FROM audit_checkpoints WHERE tenant = OLD.tenant), 0) THEN
        RAISE EXCEPTION 'audit_events is append-only: only pruning behind a checkpoint deletes';
      END IF;
      RETURN OLD;
    END $$""",
    """CREATE OR REPLACE TRIGGER audit_events_guard BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard()""",
]


class AuditStoreError(RuntimeError):
    """The audit store URL is unusable or the store cannot be reached."""


class StoredEvent(msgspec.Struct, frozen=True):
    """One stored event with its place in the chain."""

    seq: int
    event_id: str
    at_ms: int
    type: str
    notification_id: str
    channel: str
    member: str
    address: str
    body: str
    prev_hash: str
    hash: str


def chain_hash(prev_hash: str, tenant: str, seq: int, row: AuditRow | StoredEvent) -> str:
    """The hash of one event given the previous one's."""
    canonical = _canonical.encode(
        [
            tenant,
            seq,
            row.event_id,
            row.at_ms,
            row.type,
            row.notification_id,
            row.channel,
            row.member,
            row.address,
            row.body,
        ]
    )
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def row_values(row: AuditRow, seq: int, prev_hash: str, digest: str) -> tuple[Any, ...]:
    """A row's values in ``COLUMNS`` order."""
    return (
        row.tenant,
        seq,
        row.event_id,
        row.at_ms,
        row.type,
        row.notification_id,
        row.channel,
        row.member,
        row.address,
        row.body,
        prev_hash,
        digest,
    )


@dataclass
class Appended:
    """What one append did: rows stored, duplicates skipped, and each touched tenant's new head."""

    stored: int = 0
    duplicates: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)


class _Cursor(Protocol):
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

    def _begin(self, cur: _Cursor) -> None:
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
    def _transaction(self) -> Iterator[_Cursor]:
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
                    cur.execute(
                        self._sql("UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant = ?"),
                        (seq, prev, tenant),
                    )
                    result.stored += len(values)
                result.heads[tenant] = (seq, prev)
        return result

    def _insert(self, cur: Any, values: list[tuple[Any, ...]]) -> None:
        cur.executemany(self._sql(_INSERT), values)

    def _locked_head(self, cur: _Cursor, tenant: str) -> tuple[int, str]:
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

    def _stored_ids(self, cur: _Cursor, tenant: str, ids: list[str]) -> set[str]:
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
                    removed += cut - start
        return removed

    def _checkpoint(self, cur: _Cursor, tenant: str) -> tuple[int, str]:
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
    ) -> list[StoredEvent]:
        """A tenant's events in chain order, filtered, after a position (cursor paging)."""
        where = ["tenant = ?", "seq > ?"]
        params: list[Any] = [tenant, after_seq]
        if member is not None:
            where.append("member = ?")
            params.append(member)
        if since_ms is not None or until_ms is not None:
            bounds = self.seq_bounds(tenant, since_ms, until_ms)
            if bounds is None:
                return []
            where.append("seq BETWEEN ? AND ?")
            params += bounds
            if since_ms is not None:
                where.append("at_ms >= ?")
                params.append(since_ms)
            if until_ms is not None:
                where.append("at_ms <= ?")
                params.append(until_ms)
        if types:
            where.append(f"type IN ({','.join('?' * len(types))})")
            params += types
        # Only placeholders are joined in: every value is a parameter.
        sql = f"SELECT {COLUMNS} FROM audit_events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"  # noqa: S608
        return [_stored(r) for r in self._read(sql, (*params, limit))]

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
        last = start_seq
        hi: int | None = None
        if since_ms is not None or until_ms is not None:
            bounds = self.seq_bounds(tenant, since_ms, until_ms)
            if bounds is None:
                return {"ok": True, "checked": 0}
            lo, hi = bounds
            if lo - 1 > start_seq:
                before = self._read(
                    "SELECT hash FROM audit_events WHERE tenant = ? AND seq = ?", (tenant, lo - 1)
                )
                if before:
                    last, prev = lo - 1, str(before[0][0])
        checked = 0
        while True:
            sql = f"SELECT {COLUMNS} FROM audit_events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT 5000"  # noqa: S608
            rows = [_stored(r) for r in self._read(sql, (tenant, last))]
            if hi is not None:
                rows = [r for r in rows if r.seq <= hi]
            for row in rows:
                if row.seq != last + 1:
                    return _broken(tenant, checked, last + 1, None, "missing", f"event {last + 1} is missing")
                if row.prev_hash != prev:
                    return _broken(
                        tenant,
                        checked,
                        row.seq,
                        row.event_id,
                        "out_of_order",
                        "prev_hash is not the previous event's hash",
                    )
                if chain_hash(prev, tenant, row.seq, row) != row.hash:
                    return _broken(
                        tenant,
                        checked,
                        row.seq,
                        row.event_id,
                        "altered",
                        "the event's content does not match its hash",
                    )
                prev, last = row.hash, row.seq
                checked += 1
            if not rows or (hi is not None and last >= hi):
                break
        if hi is not None:
            return {"ok": True, "checked": checked}
        head_seq, head_hash = self.head(tenant)
        for name, mark in (("head", (head_seq, head_hash)), ("anchor", anchor)):
            if mark is None or mark[0] <= start_seq:
                continue
            seq, digest = mark
            if seq > last:
                return _broken(
                    tenant,
                    checked,
                    last + 1,
                    None,
                    "truncated",
                    f"the {name} names event {seq}, the store ends at {last}",
                )
            stored = self._read("SELECT hash FROM audit_events WHERE tenant = ? AND seq = ?", (tenant, seq))
            if not stored or stored[0][0] != digest:
                return _broken(
                    tenant,
                    checked,
                    seq,
                    None,
                    "altered",
                    f"event {seq} does not have the hash the {name} recorded",
                )
        if head_seq != last:
            return _broken(
                tenant,
                checked,
                head_seq + 1,
                None,
                "unrecorded",
                f"events after {head_seq} are not in the head",
            )
        return {"ok": True, "checked": checked}


def _broken(
    tenant: str, checked: int, seq: int, event_id: str | None, code: str, detail: str
) -> dict[str, Any]:
    return {
        "ok": False,
        "checked": checked,
        "broken": {"tenant": tenant, "seq": seq, "event_id": event_id, "reason": code, "detail": detail},
    }


def _stored(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        seq=int(row[1]),
        event_id=row[2],
        at_ms=int(row[3]),
        type=row[4],
        notification_id=row[5],
        channel=row[6],
        member=row[7],
        address=row[8],
        body=row[9],
        prev_hash=row[10],
        hash=row[11],
    )


class SqliteAuditStore(AuditStore):
    """One SQLite file (WAL, synchronous FULL): the default for one host and for ``tidings dev``."""

    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        for sql in _TABLES + _SQLITE_GUARDS:
            conn.execute(sql)
        conn.execute("COMMIT")

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return _SqliteConn(conn)

    def _begin(self, cur: _Cursor) -> None:
        cur.execute("BEGIN IMMEDIATE")


class _SqliteConn:
    """sqlite3 in autocommit mode with explicit transactions, shaped like a DB-API connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn

    def cursor(self) -> sqlite3.Cursor:
        return self.raw.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.raw.execute(sql, params)

    def commit(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


class PostgresAuditStore(AuditStore):
    """PostgreSQL (psycopg 3): for production, where several hosts share one audit log."""

    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        conn = self._conn()
        with conn.cursor() as cur:
            # Two processes creating the schema at once would trip over each other's catalogue rows.
            cur.execute("SELECT pg_advisory_xact_lock(7104710471)")
            for sql in _TABLES + _POSTGRES_GUARDS:
                cur.execute(sql)
        conn.commit()

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise AuditStoreError(f"cannot reach the audit database: {exc}") from None

    def _begin(self, cur: _Cursor) -> None:
        pass  # psycopg opens the transaction; heads are locked row by row (SELECT ... FOR UPDATE)

    def _for_update(self) -> str:
        return " FOR UPDATE"

    def _stored_ids(self, cur: _Cursor, tenant: str, ids: list[str]) -> set[str]:
        cur.execute(
            "SELECT event_id FROM audit_events WHERE tenant = %s AND event_id = ANY(%s)", (tenant, ids)
        )
        return {r[0] for r in cur.fetchall()}

    def _insert(self, cur: Any, values: list[tuple[Any, ...]]) -> None:
        # COPY: one stream for the batch instead of a statement per row (20x faster).
        with cur.copy(f"COPY audit_events ({COLUMNS}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)


def open_store(url: str) -> AuditStore:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise AuditStoreError("sqlite:/// URL without a file path")
        return SqliteAuditStore(url, Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresAuditStore(url)
    raise AuditStoreError("TIDINGS_AUDIT_URL must start with sqlite:/// or postgresql://")
