"""Opening the audit store a URL names."""

from __future__ import annotations

from pathlib import Path

from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.sqlite import SqliteAuditStore
from gateway.audit.store import AuditStore
from gateway.errors import AuditStoreError


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
