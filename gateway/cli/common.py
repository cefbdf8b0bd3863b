"""What every ``tidings`` command shares: the ``--data-dir`` option and the services it works with.

How a command finds Redis and the audit store from that option is gateway/cli/locate.py."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import CliError
from gateway.settings import Settings

if TYPE_CHECKING:  # the importers load on first use: `tidings --help` stays quick
    from gateway.optouts.importer import LineReport

DATA_DIR_HELP = (
    "the data dir of `tidings dev` (its redis.sock and audit.sqlite3); default: TIDINGS_DATA_DIR,"
    " else the running `tidings dev`'s (from its state file), else ./var."
    " TIDINGS_REDIS_URL and TIDINGS_AUDIT_URL, when set, win for their own service"
)


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless there is none to show (None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that shows defaults; its subparsers are Parsers too (argparse makes each
    subparser of the parser's own class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` option of the commands that talk to Redis or the audit store."""
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)


def core_for(settings: Settings, url: str) -> Any:
    """The services a command works with, on their own connection (the caller awaits ``aclose()``)."""
    from gateway.services import build_services

    return build_services(settings, url)


R = TypeVar("R", bound="LineReport")
SHOWN_INVALID = 20  # invalid rows an import prints; it counts the rest


def import_file(
    file: str, run: Callable[[AsyncIterator[bytes], Callable[[int, Any], None]], Coroutine[Any, Any, R]]
) -> tuple[R, float]:
    """Stream a local CSV file through an importer's ``run(chunks, progress)`` with a progress bar on
    standard error; (its report, seconds taken)."""
    path = Path(file)
    try:
        total = path.stat().st_size
    except OSError as exc:
        raise CliError(f"{file}: {exc.strerror}") from None
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, report: Any) -> None:
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

    async def chunks(fh: Any) -> AsyncIterator[bytes]:
        while data := fh.read(1 << 20):  # a local file: each read is short
            yield data

    with path.open("rb") as fh:
        report: R = asyncio.run(run(chunks(fh), progress))
    sys.stderr.write("\n")
    return report, time.monotonic() - started


def print_import(report: LineReport, elapsed: float, counts: dict[str, int]) -> None:
    """The summary line of an import and its first invalid rows, in file order."""
    middle = "  ".join(f"{name} {n:,}" for name, n in counts.items())
    print(
        f"rows {report.rows:,}  {middle}  invalid {report.invalid_count:,}  in {elapsed:.1f} s"
        f" ({report.rows / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    # A row may be found invalid when it is read or when its chunk is written: put them in file order.
    for bad in sorted(report.invalid, key=lambda b: int(b["line"]))[:SHOWN_INVALID]:
        print(f"  line {bad['line']}: {bad['error']}")
    if report.invalid_count > SHOWN_INVALID:
        print(f"  ... and {report.invalid_count - SHOWN_INVALID:,} more")
