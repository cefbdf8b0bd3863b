"""The audit store's tables and indexes, shared by both backends."""

from __future__ import annotations

TABLES = [
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
    # A member's events are found from their heads (``memberindex``); a notification's by this index.
    "DROP INDEX IF EXISTS audit_events_member",
    "CREATE INDEX IF NOT EXISTS audit_events_notification ON audit_events (tenant, notification_id, seq)",
    # Time windows and the console's newest-first pages walk (tenant, at_ms, seq); an auditor's
    # type filter walks (tenant, type, seq): a page costs the same on a log of millions.
    "DROP INDEX IF EXISTS audit_events_at",
    "CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (tenant, at_ms, seq)",
    "CREATE INDEX IF NOT EXISTS audit_events_type ON audit_events (tenant, type, seq)",
    """CREATE TABLE IF NOT EXISTS audit_heads (
        tenant TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_member_heads (
        tenant TEXT NOT NULL,
        member TEXT NOT NULL,
        seq BIGINT NOT NULL,
        notification_id TEXT NOT NULL,
        PRIMARY KEY (tenant, member, seq)
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_member_heads_notification"
    " ON audit_member_heads (tenant, notification_id) WHERE notification_id <> ''",
    """CREATE TABLE IF NOT EXISTS audit_checkpoints (
        tenant TEXT NOT NULL,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, seq)
    )""",
]
