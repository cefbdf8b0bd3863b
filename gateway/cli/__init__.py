"""The ``tidings`` command, one module per group of subcommands (``main`` assembles them)."""

from gateway.cli.main import main

__all__ = ["main"]
