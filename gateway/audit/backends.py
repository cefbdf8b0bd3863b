"""Opening the audit store a URL names."""

from __future__ import annotations

from pathlib import Path

from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.sqlite import SqliteAuditStore
from gateway.audit.store import AuditStore
from gateway.errors import AuditStoreError

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names (relative to the current folder unless absolute), else None."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    path = url[len(SQLITE_PREFIX) :]
    if not path:
        raise AuditStoreError("sqlite:/// URL without a file path")
    return Path(path)


def open_store(url: str) -> AuditStore:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``postgresql://...``.

    A SQLite file that is not there yet is created (with its folder): callers that only read check
    first (the ``tidings audit`` read commands do, see gateway/cli/locate.py)."""
    path = sqlite_path(url)
    if path is not None:
        return SqliteAuditStore(url, path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresAuditStore(url)
    raise AuditStoreError("TIDINGS_AUDIT_URL must start with sqlite:/// or postgresql://")
