"""Tidings: the notification gateway service shell."""

__version__ = "0.1.0"
