"""The SQLite audit store: one file (WAL, synchronous FULL), the default for one host and ``tidings dev``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.audit.memberindex import index_old_events
from gateway.audit.schema import TABLES
from gateway.audit.store import AuditStore, Cursor

_SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN OLD.seq > COALESCE((SELECT MAX(seq) FROM audit_checkpoints WHERE tenant = OLD.tenant), 0)
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: only pruning behind a checkpoint deletes'); END""",
]


class SqliteAuditStore(AuditStore):
    """One SQLite file (WAL, synchronous FULL): the default for one host and for ``tidings dev``."""

    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        for sql in TABLES + _SQLITE_GUARDS:
            cur.execute(sql)
        index_old_events(cur)
        cur.execute("COMMIT")

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return _SqliteConn(conn)

    def _begin(self, cur: Cursor) -> None:
        # A writer's connection gets 64 MB of page cache (the default is 2 MB): the member heads
        # of millions of events are written all over, and a page a write needs is read first if not
        # cached. Readers keep the default, so an export of a million rows stays flat. The
        # writer checkpoints the WAL every 10,000 pages (40 MB; SQLite's default is 1,000): the
        # member index (then on every event) took each event at a random place, so a commit dirtied
        # a page an event, and rarer checkpoints write each page once for many commits (appends of
        # 500,000 campaign events: 43,000/s against 33,500/s).
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA wal_autocheckpoint=10000")
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
