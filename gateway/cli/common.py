"""What every ``tidings`` command shares: the ``--data-dir`` option and the services it works with.

How a command finds Redis and the audit store from that option is gateway/cli/locate.py."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.settings import Settings

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
