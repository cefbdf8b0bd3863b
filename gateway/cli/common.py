"""What every ``tidings`` command shares: the one-line error and how a command finds its Redis."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.errors import CliError
from gateway.settings import Settings

DEFAULT_DATA_DIR = "./var"


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` option of the commands that talk to Redis."""
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="where `tidings dev` keeps its Redis (used when TIDINGS_REDIS_URL is unset)",
    )


def redis_url_for(settings: Settings, data_dir: str) -> str:
    """TIDINGS_REDIS_URL, else the socket of a running `tidings dev`."""
    if settings.redis_url:
        return settings.redis_url
    sock = Path(data_dir).resolve() / "redis.sock"
    if sock.exists():
        return f"unix://{sock}"
    raise CliError("set TIDINGS_REDIS_URL (or run `tidings dev` for an embedded Redis)")


def core_for(settings: Settings, url: str) -> Any:
    """The services a command works with, on their own connection (the caller awaits ``aclose()``)."""
    from gateway.services import build_services

    return build_services(settings, url)
