"""``tidings optouts import|export``: opt-out lists in and out as CSV."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.cli.common import core_for, import_file, print_import
from gateway.cli.locate import redis_url_for
from gateway.settings import Settings


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``optouts`` command and its subcommands; returns those that find the data dir (Redis)."""
    optouts = sub.add_parser("optouts", help="import and export opt-outs")
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
    return [imp, exp]


def cmd_optouts_import(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a CSV file into the opt-out store with a progress bar and a summary."""
    from gateway.optouts.importer import CsvImporter, ImportReport

    url = redis_url_for(settings, args.data_dir)

    async def run(chunks: AsyncIterator[bytes], progress: Callable[[int, Any], None]) -> ImportReport:
        core = core_for(settings, url)
        try:
            importer = CsvImporter(core.optouts, args.tenant, settings.default_region, by="cli")
            return await importer.run(chunks, progress)
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
