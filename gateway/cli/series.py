"""``tidings series import|show``: start reminder series from a CSV file, and look one up."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.cli.common import core_for, import_file, print_import
from gateway.cli.locate import redis_url_for
from gateway.errors import CliError, NotFound, ProblemError
from gateway.settings import Settings


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

    async def run(chunks: AsyncIterator[bytes], progress: Callable[[int, Any], None]) -> SeriesImportReport:
        core = core_for(settings, url)
        try:
            if await core.series.definitions.get(args.tenant, args.definition) is None:
                raise CliError(
                    f"no series definition named {args.definition!r} for tenant {args.tenant!r}"
                    " (GET /v1/series-definitions lists them)"
                )
            importer = SeriesImporter(core.series, args.tenant, args.definition, args.brand)
            try:
                return await importer.run(chunks, progress)
            except ProblemError as exc:  # no usable header row, an empty file
                raise CliError(f"{args.file}: {exc.detail}") from None
        finally:
            await core.aclose()

    report, elapsed = import_file(args.file, run)
    print_import(report, elapsed, {"started": report.started, "duplicates": report.duplicates})
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
