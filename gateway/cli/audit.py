"""``tidings audit search|export|verify|consume|prune``: the audit log from a shell."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from gateway.cli.locate import audit_url_for, redis_url_for
from gateway.errors import CliError
from gateway.settings import Settings

# The heavy modules (the web layer's helpers, database drivers) are imported by the commands that
# use them: `tidings lint` and friends start fast.


def _fail(message: str) -> Exception:
    return CliError(message)


def _redis_url(settings: Settings, args: argparse.Namespace) -> str:
    return redis_url_for(settings, args.data_dir)


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``audit`` command and its subcommands; returns those that find the data dir (all of them:
    each opens the audit store, verify and consume Redis too)."""
    audit = sub.add_parser("audit", help="the audit log: search, export, verify, consume, prune")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    search = audit_sub.add_parser("search", help="a tenant's events as JSON lines, oldest first")
    search.add_argument("--tenant", required=True, help="the tenant whose events to search")
    search.add_argument("--address", help="phone number (any form), email address or push token")
    search.add_argument("--from", dest="since", help="events at or after this RFC 3339 time (with offset)")
    search.add_argument("--to", dest="until", help="events at or before this RFC 3339 time (with offset)")
    search.add_argument("--type", dest="types", help="comma-separated event types")
    search.add_argument("--limit", type=int, default=1000, help="at most this many events")
    search.set_defaults(func=cmd_search)

    export = audit_sub.add_parser("export", help="a tenant's events as CSV (streamed)")
    export.add_argument("--tenant", required=True, help="the tenant whose events to export")
    export.add_argument("--from", dest="since", help="events at or after this RFC 3339 time (with offset)")
    export.add_argument("--to", dest="until", help="events at or before this RFC 3339 time (with offset)")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.set_defaults(func=cmd_export)

    verify = audit_sub.add_parser("verify", help="check every tenant's hash chain; exit 1 if one is broken")
    verify.add_argument("--tenant", help="check this tenant only (default: every tenant in the store)")
    verify.set_defaults(func=cmd_verify)

    consume = audit_sub.add_parser("consume", help="move events from Redis into the audit store")
    consume.add_argument("--drain", action="store_true", help="stop once the streams are empty")
    consume.add_argument("--name", help="consumer name (default: host and process)")
    consume.add_argument("--batch", type=int, default=1000, help="stream entries read and stored per batch")
    consume.add_argument("--lease", type=float, default=15.0, help="leader lease in seconds")
    consume.set_defaults(func=cmd_consume)

    prune = audit_sub.add_parser("prune", help="remove events older than the retention, behind a checkpoint")
    prune.add_argument(
        "--days", type=int, help="keep this many days, at least 150 (default: TIDINGS_AUDIT_RETENTION_DAYS)"
    )
    prune.set_defaults(func=cmd_prune)
    return [search, export, verify, consume, prune]


def _open(settings: Settings, args: argparse.Namespace, *, existing: bool = True) -> Any:
    """The audit store of the data dir; unless ``existing`` is False (the consumer), a SQLite file
    that is not there fails (exit 2) naming where it looked: reading never creates an empty store."""
    from gateway.audit.backends import open_store
    from gateway.errors import AuditStoreError

    url = audit_url_for(settings, args.data_dir, existing=existing)
    try:
        return open_store(url)
    except AuditStoreError as exc:
        raise _fail(str(exc)) from None


def _checked(fn: Callable[[], Any]) -> Any:
    from gateway.errors import ProblemError

    try:
        return fn()
    except ProblemError as exc:
        raise _fail(f"{exc.code}: {exc.detail}") from None


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    """Print matching events, one JSON object per line."""
    from gateway.api.audit import event_view, member_of, parse_time
    from gateway.recipients import Members

    member = None
    if args.address:
        members = Members(settings.hmac_key)
        member = _checked(lambda: member_of(members, args.address, settings.default_region))
    since = _checked(lambda: parse_time("--from", args.since))
    until = _checked(lambda: parse_time("--to", args.until))
    types = [t for t in (args.types or "").split(",") if t]
    store = _open(settings, args)
    try:
        found = store.search(
            args.tenant, member=member, since_ms=since, until_ms=until, types=types, limit=args.limit
        )
        for e in found:
            print(json.dumps(event_view(e), ensure_ascii=False))
    finally:
        store.close()
    print(f"{len(found)} event(s)", file=sys.stderr)
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """CSV of a tenant's events, a page at a time."""
    from gateway.api.audit import CSV_COLUMNS, csv_rows, parse_time

    since = _checked(lambda: parse_time("--from", args.since))
    until = _checked(lambda: parse_time("--to", args.until))
    store = _open(settings, args)
    count = 0
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        out.write(",".join(CSV_COLUMNS) + "\n")
        for page in store.iter_events(args.tenant, since_ms=since, until_ms=until):
            out.write(csv_rows(page))
            count += len(page)
    finally:
        store.close()
        if out is not sys.stdout:
            out.close()
    print(f"{count:,} event(s) exported", file=sys.stderr)
    return 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    """One JSON line per tenant; the anchors in Redis are used when Redis is reachable."""
    from gateway.audit.stream import parse_anchor
    from gateway.state import keys
    from gateway.state.redisdb import sync_client

    anchors: dict[str, tuple[int, str] | None] = {}
    store = _open(settings, args)
    try:
        tenants = [args.tenant] if args.tenant else store.tenants()
        try:
            client = sync_client(_redis_url(settings, args))
            for tenant in tenants:
                anchors[tenant] = parse_anchor(client.get(keys.audit_head(tenant)))
            client.close()
        except Exception as exc:  # verify still checks the chain itself without Redis
            print(f"tidings: no Redis anchors ({exc}); checking the store alone", file=sys.stderr)
        broken = 0
        for tenant in tenants:
            result = store.verify(tenant, anchor=anchors.get(tenant))
            print(json.dumps({"tenant": tenant, **result}, ensure_ascii=False))
            broken += 0 if result["ok"] else 1
    finally:
        store.close()
    return 1 if broken else 0


def cmd_consume(settings: Settings, args: argparse.Namespace) -> int:
    """Run a consumer (it leads when no other does); SIGINT/SIGTERM stop it after the current batch."""
    from gateway.audit.consumer import AuditConsumer
    from gateway.delivery.worker import worker_name
    from gateway.state.redisdb import sync_client

    client = sync_client(_redis_url(settings, args), decode=True)
    store = _open(settings, args, existing=False)
    consumer = AuditConsumer(
        client,
        store,
        name=args.name or worker_name(),
        batch=args.batch,
        lease_seconds=args.lease,
        retention_days=settings.audit_retention_days,
    )
    try:
        if args.drain:
            moved = consumer.drain(timeout=3600)
            consumer.release()
            print(f"{moved:,} entries moved", file=sys.stderr)
            return 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        consumer.run(stop)
        return 0
    finally:
        store.close()
        client.close()


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Remove old events (never fewer days than the legal minimum the settings enforce)."""
    import time

    days = args.days if args.days is not None else settings.audit_retention_days
    if days < 150:
        raise _fail("--days must be at least 150 (MIIT: records kept at least 5 months)")
    store = _open(settings, args)
    try:
        now = time.time()
        removed = store.prune(int((now - days * 86_400) * 1000), int(now * 1000))
    finally:
        store.close()
    print(f"{removed:,} event(s) older than {days} days removed", file=sys.stderr)
    return 0
