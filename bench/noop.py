"""A job that does nothing: rq's own per-job cost is the baseline for delivery."""

from __future__ import annotations


def noop(index: int) -> None:
    """Nothing at all."""
