"""``tidings optouts import|export|reconcile``: opt-out lists in and out as CSV, and Redis put back
in line with the audit log."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.cli.common import core_for, import_file, print_import
from gateway.cli.locate import audit_url_for, redis_url_for
from gateway.errors import CliError
from gateway.settings import Settings


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``optouts`` command and its subcommands; returns those that find the data dir (Redis)."""
    optouts = sub.add_parser(
        "optouts",
        help="import, export and reconcile opt-outs",
        description="Opt-outs in and out as CSV, and `reconcile`: write back the opt-outs the audit log"
        " holds and Redis lacks (after a restore from an old backup or a write lost in a failover).",
    )
    optouts_sub = optouts.add_subparsers(dest="optouts_command", required=True)
    imp = optouts_sub.add_parser("import", help="import a CSV file (address,brand,channel), streaming")
    imp.add_argument(
        "file", help="CSV file of address,brand,channel rows (header optional; empty brand or channel: all)"
    )
    imp.add_argument("--tenant", required=True, help="the tenant whose opt-outs these are")
    imp.set_defaults(func=cmd_optouts_import)
    exp = optouts_sub.add_parser("export", help="export every opt-out of a tenant as CSV")
    exp.add_argument("--tenant", required=True, help="the tenant whose opt-outs to export")
    exp.add_argument("--output", help="file to write (default: standard output)")
    exp.add_argument(
        "--include-addresses",
        action="store_true",
        help="full addresses, to sync a suppression list (masked otherwise; recorded in the audit log either way)",
    )
    exp.set_defaults(func=cmd_optouts_export)
    rec = optouts_sub.add_parser(
        "reconcile",
        help="restore every opt-out the audit log holds and Redis lacks (idempotent), with a report",
        description="Replays the tenant's opt_out and opt_in audit events (the store, and what its"
        " Redis audit stream still holds for the audit consumer); for each member and scope the latest event wins. Every"
        " opt-out Redis lacks is written back (no second opt_out event: one optouts_reconciled event"
        " records the run). Entries only in Redis, and entries whose latest event is an opt-in"
        " (conflicts), are reported, never removed. Where Redis has replicas, every batch written back"
        " is acknowledged by one (WAIT, TIDINGS_OPTOUT_WAIT_MS) before the next. Exit 2 when the tenant"
        " has no events, a store does not answer, or no replica acknowledged a batch in time (run it"
        " again: it is idempotent).",
    )
    rec.add_argument("--tenant", required=True, help="the tenant whose opt-outs to reconcile")
    rec.add_argument("--dry-run", action="store_true", help="report what would be restored; write nothing")
    rec.add_argument("--json", action="store_true", help="the report as one JSON object")
    rec.set_defaults(func=cmd_optouts_reconcile)
    return [imp, exp, rec]


def cmd_optouts_import(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a CSV file into the opt-out store with a progress bar and a summary."""
    from gateway.optouts.importer import CsvImporter, ImportReport
    from gateway.optouts.replication import OptOutNotReplicated

    url = redis_url_for(settings, args.data_dir)

    async def run(chunks: AsyncIterator[bytes], progress: Callable[[int, Any], None]) -> ImportReport:
        core = core_for(settings, url)
        importer = CsvImporter(core.optouts, args.tenant, settings.default_region, by="cli")
        try:
            return await importer.run(chunks, progress)
        except OptOutNotReplicated:
            sys.stderr.write("\n")  # end the progress bar's line
            raise CliError(
                f"no replica acknowledged the imported opt-outs within {settings.optout_wait_ms} ms"
                f" (TIDINGS_OPTOUT_WAIT_MS); stopped after {importer.report.imported:,} imported and"
                " acknowledged. Import the file again once a replica is connected: the rows acknowledged"
                " before count as duplicates, the rest as imported"
            ) from None
        finally:
            await core.aclose()

    report, elapsed = import_file(args.file, run)
    print_import(report, elapsed, {"imported": report.imported, "duplicates": report.duplicates})
    return 0


def cmd_optouts_export(settings: Settings, args: argparse.Namespace) -> int:
    """Every opt-out of the tenant as CSV (address,brand,channel,since,source)."""
    from gateway.api.optouts import csv_line

    url = redis_url_for(settings, args.data_dir)

    async def run(out: Any) -> int:
        core = core_for(settings, url)
        optouts = core.optouts
        count = 0
        try:
            out.write("address,brand,channel,since,source\n")
            async for entry in optouts.export(args.tenant, addresses=args.include_addresses, via="cli"):
                out.write(csv_line(entry))
                count += 1
        finally:
            await core.aclose()
        return count

    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            count = asyncio.run(run(fh))
    else:
        count = asyncio.run(run(sys.stdout))
    print(f"{count:,} opt-out(s) exported", file=sys.stderr)
    return 0


def cmd_optouts_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """Restore the opt-outs the audit log holds and Redis lacks; print the report."""
    from gateway.audit.backends import open_store
    from gateway.errors import AuditStoreError
    from gateway.optouts.reconcile import NoEvents, NotReplicated, Reconciler, Report
    from gateway.state.redisdb import async_client

    redis_url = redis_url_for(settings, args.data_dir)
    audit_url = audit_url_for(settings, args.data_dir, existing=True)
    try:
        store = open_store(audit_url)
    except AuditStoreError as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:
        raise _store_error(exc) from None

    async def run() -> Report:
        client = async_client(redis_url, max_connections=4)
        try:
            reconciler = Reconciler(client, store, args.tenant, wait_ms=settings.optout_wait_ms)
            return await reconciler.run(dry_run=args.dry_run)
        finally:
            await client.aclose()

    try:
        report = asyncio.run(run())
    except (NoEvents, NotReplicated) as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        return 0
    would = " (dry run: nothing written)" if report.dry_run else ""
    print(f"tenant {report.tenant}{would}")
    print(f"  events read      {report.events_read:,} ({report.from_stream:,} still in the Redis stream)")
    print(f"  members          {report.members:,}")
    print(f"  {'would restore' if report.dry_run else 'restored':<16} {report.restored:,}")
    print(f"  already present  {report.already_present:,}")
    print(f"  only in Redis    {report.only_in_redis:,} (left alone)")
    print(
        f"  conflicts        {report.conflicts:,} (opted back in, Redis still holds the opt-out; left alone)"
    )
    for c in report.conflict_list:
        print(f"    member {c['member']} scope {c['scope']} opted in at {c['opted_in_at']}")
    if report.conflicts > len(report.conflict_list):
        print(f"    ... and {report.conflicts - len(report.conflict_list):,} more")
    return 0


def _store_error(exc: Exception) -> Exception:
    """A database driver's error (the audit log unreadable or gone) as one line; anything else as is."""
    if type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg"):
        return CliError(f"the audit log does not answer: {exc}")
    return exc
