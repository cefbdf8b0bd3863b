"""``tidings series import|show``: start reminder series from a CSV file, and look one up."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway.cli.common import core_for
from gateway.cli.locate import redis_url_for
from gateway.errors import CliError, NotFound, ProblemError
from gateway.settings import Settings

SHOWN_INVALID = 20


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``series`` command and its subcommands; returns those that find the data dir (Redis)."""
    series = sub.add_parser("series", help="start reminder series from a CSV file and look them up")
    series_sub = series.add_subparsers(dest="series_command", required=True)
    imp = series_sub.add_parser(
        "import", help="start one series per CSV row (phone or email, anchor_at, key, params), streaming"
    )
    imp.add_argument(
        "file",
        help="CSV file with a header row: phone or email, anchor_at (RFC 3339), optionally key and"
        " timezone, then one column per template param (name, points...)",
    )
    imp.add_argument(
        "--definition", required=True, help="the series definition every row starts (catalogue or tenant)"
    )
    imp.add_argument("--tenant", required=True, help="the tenant whose series these are")
    imp.add_argument(
        "--brand",
        help="the brand the steps are sent as (registered in the policy; SMS steps need one to be signed)",
    )
    imp.set_defaults(func=cmd_series_import)
    show = series_sub.add_parser("show", help="one series with its steps, as JSON (address masked)")
    show.add_argument("series_id", metavar="ID", help="the series id (ser_...)")
    show.add_argument("--tenant", required=True, help="the tenant the series belongs to")
    show.set_defaults(func=cmd_series_show)
    return [imp, show]


def cmd_series_import(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a CSV file into new series with a progress bar and a summary."""
    from gateway.series.importer import SeriesImporter, SeriesImportReport

    url = redis_url_for(settings, args.data_dir)
    path = Path(args.file)
    try:
        total = path.stat().st_size
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror}") from None
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, report: SeriesImportReport) -> None:
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

    async def run(fh: Any) -> SeriesImportReport:
        core = core_for(settings, url)
        try:
            if await core.series.definitions.get(args.tenant, args.definition) is None:
                raise CliError(
                    f"no series definition named {args.definition!r} for tenant {args.tenant!r}"
                    " (GET /v1/series-definitions lists them)"
                )
            importer = SeriesImporter(core.series, args.tenant, args.definition, args.brand)
            try:
                return await importer.run(chunks(fh), progress)
            except ProblemError as exc:  # no usable header row, an empty file
                raise CliError(f"{args.file}: {exc.detail}") from None
        finally:
            await core.aclose()

    with path.open("rb") as fh:
        report = asyncio.run(run(fh))
    elapsed = time.monotonic() - started
    sys.stderr.write("\n")
    print(
        f"rows {report.rows:,}  started {report.started:,}  duplicates {report.duplicates:,}  "
        f"invalid {report.invalid_count:,}  in {elapsed:.1f} s ({report.rows / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    # A row is found invalid when it is read or when its chunk is started: put them back in file order.
    for bad in sorted(report.invalid, key=lambda b: int(b["line"]))[:SHOWN_INVALID]:
        print(f"  line {bad['line']}: {bad['error']}")
    if report.invalid_count > SHOWN_INVALID:
        print(f"  ... and {report.invalid_count - SHOWN_INVALID:,} more")
    return 0


def cmd_series_show(settings: Settings, args: argparse.Namespace) -> int:
    """The series as ``GET /v1/series/{id}`` answers it."""
    url = redis_url_for(settings, args.data_dir)

    async def run() -> dict[str, Any]:
        core = core_for(settings, url)
        try:
            found: dict[str, Any] = await core.series.get(args.tenant, args.series_id)
            return found
        except NotFound:
            raise CliError(f"no series {args.series_id!r} for tenant {args.tenant!r}") from None
        finally:
            await core.aclose()

    print(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))
    return 0
