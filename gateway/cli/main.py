"""The ``tidings`` command: parses the arguments and runs one subcommand (each lives in its own module)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gateway.cli import admin, dev, optouts, serve
from gateway.cli import audit as audit_cli
from gateway.cli import series as series_cli
from gateway.cli.common import Parser, add_data_dir
from gateway.cli.locate import DEFAULT_DATA_DIR
from gateway.errors import CliError, SettingsError
from gateway.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    from gateway.logs import configure

    configure(settings.log_level, settings.log_format)
    if args.command in ("dev", "serve", "worker"):
        from compliance.policy import PolicyError, load_policy

        try:
            load_policy(settings.policy_path)  # a bad policy stops the start, with the place it is wrong
        except PolicyError as exc:
            print(f"tidings: invalid policy: {exc}", file=sys.stderr)
            return 2
    if args.command in ("dev", "worker") and settings.providers_path:
        from channels.config import ProvidersError, load_router

        try:
            router = load_router(settings.providers_path)  # fails at start, naming the place, never a secret
        except ProvidersError as exc:
            print(f"tidings: invalid providers file: {exc}", file=sys.stderr)
            return 2
        for provider in router.providers.values():
            logging.getLogger("tidings").info("provider %s: %r", provider.name, provider.adapter)
    from compliance.policy import PolicyError

    try:
        result: int = args.func(settings, args)
        return result
    except KeyboardInterrupt:  # Ctrl-C before a command set its own handler: no traceback
        print("tidings: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tidings ... | head`: the reader left; end quietly
        sys.stderr.close()
        return 0
    except CliError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"tidings: invalid policy: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        down = _redis_unreachable(exc)
        if down is None:
            raise
        print(f"tidings: {down}", file=sys.stderr)
        return 2


def _redis_unreachable(exc: Exception) -> str | None:
    """A Redis that does not answer (a socket left by a killed `tidings dev`, a wrong TIDINGS_REDIS_URL),
    as one line naming where it was tried; None for any other error. redis is imported only by the
    commands that use it, so an error from it means it was imported."""
    errors = sys.modules.get("redis.exceptions")
    if errors is not None and isinstance(exc, errors.ConnectionError):
        return f"Redis does not answer: {exc}"
    return None


def build_parser() -> argparse.ArgumentParser:
    """All subcommands; every parser shows each option's default in its help (``Parser``)."""
    p = Parser(
        prog="tidings",
        description="Notification gateway with compliance guardrails.",
        epilog=(
            "Commands that talk to Redis or the audit log find the data of `tidings dev` the same way"
            " from any folder: --data-dir, else TIDINGS_DATA_DIR, else the running `tidings dev`"
            f" (the state file it writes), else {DEFAULT_DATA_DIR}. TIDINGS_REDIS_URL and"
            " TIDINGS_AUDIT_URL, when set, win for their own service. Read commands never create a store."
        ),
    )
    sub = p.add_subparsers(dest="command", required=True)
    for module in (dev, serve, admin, optouts, series_cli, audit_cli):
        for finds_data in module.add_parsers(sub):
            add_data_dir(finds_data)
    return p
