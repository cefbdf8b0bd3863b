"""Audit store backends for tests: a fresh SQLite file, or a fresh schema on a real PostgreSQL."""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_base() -> str | None:
    """AUDIT_TEST_POSTGRES_URL (then it must work: .ci/run sets it when a server answers), else the
    local default if one answers, else None (the PostgreSQL cases are skipped)."""
    import psycopg

    given = os.environ.get("AUDIT_TEST_POSTGRES_URL")
    try:
        psycopg.connect(given or DEFAULT_POSTGRES, connect_timeout=3).close()
    except psycopg.OperationalError:
        if given:
            raise
        return None
    return given or DEFAULT_POSTGRES


@dataclass
class Backend:
    """One audit database a test may also reach behind the store's back (as an attacker would)."""

    kind: str
    url: str
    path: Path | None = None
    base: str | None = None
    schema: str | None = None

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run SQL on a connection of its own (no triggers disabled unless the SQL says so)."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(str(self.path), isolation_level=None)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def disable_guards(self) -> None:
        """What an attacker with write access does first."""
        if self.kind == "sqlite":
            self.raw("DROP TRIGGER audit_events_no_update")
            self.raw("DROP TRIGGER audit_events_no_delete")
        else:
            self.raw("ALTER TABLE audit_events DISABLE TRIGGER audit_events_guard")

    def dump(self) -> bytes:
        """Everything the database holds, as bytes to grep (files for SQLite, every row for PostgreSQL)."""
        if self.kind == "sqlite":
            assert self.path is not None
            return b"".join(p.read_bytes() for p in self.path.parent.glob(self.path.name + "*"))
        rows = []
        for table in ("audit_events", "audit_heads", "audit_member_heads", "audit_checkpoints"):
            rows += [repr(r) for r in self.raw(f"SELECT * FROM {table}")]
        return "\n".join(rows).encode()


def make_backend(kind: str, tmp_path: Path) -> Iterator[Backend]:
    """A fresh backend of the kind; PostgreSQL gets its own schema, dropped afterwards."""
    if kind == "sqlite":
        path = tmp_path / "audit.sqlite3"
        yield Backend("sqlite", f"sqlite:///{path}", path=path)
        return
    base = postgres_base()
    if base is None:
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432 (set AUDIT_TEST_POSTGRES_URL)")
    import psycopg

    schema = f"audit_test_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield Backend("postgres", url, base=base, schema=schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
