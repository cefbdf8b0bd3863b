"""``tidings optouts import|export``: opt-out lists in and out as CSV."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from gateway.cli.common import core_for
from gateway.cli.locate import redis_url_for
from gateway.errors import CliError
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
    path = Path(args.file)
    try:
        total = path.stat().st_size
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror}") from None
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, report: ImportReport) -> None:
        now = time.monotonic()
        if now - last[0] < 0.25 and done < total:
            return
        last[0] = now
        width = 30
        filled = int(width * done / total) if total else width
        rate = report.rows / max(now - started, 1e-9)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done * 100 // max(total, 1):3d}%  {report.rows:,} rows  {rate:,.0f} rows/s"
        )
        sys.stderr.flush()

    async def chunks(fh: Any) -> Any:
        while data := fh.read(1 << 20):  # a local file: each read is short
            yield data

    async def run(fh: Any) -> ImportReport:
        core = core_for(settings, url)
        optouts = core.optouts
        try:
            importer = CsvImporter(optouts, args.tenant, settings.default_region, by="cli")
            return await importer.run(chunks(fh), progress)
        finally:
            await core.aclose()

    with path.open("rb") as fh:
        report = asyncio.run(run(fh))
    elapsed = time.monotonic() - started
    sys.stderr.write("\n")
    print(
        f"rows {report.rows:,}  imported {report.imported:,}  duplicates {report.duplicates:,}  "
        f"invalid {report.invalid_count:,}  in {elapsed:.1f} s ({report.rows / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    for bad in report.invalid[:20]:
        print(f"  line {bad['line']}: {bad['error']}")
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
