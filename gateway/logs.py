"""Log lines: plain text or one JSON object per line, with request and notification ids, addresses masked.

The request id comes from the request's ``X-Request-Id`` (or is made up) and goes back in the answer's
``X-Request-Id``; a log call made while a request is handled carries it. Log calls about one
notification pass ``extra={"notification_id": ...}``. Every line, in either format and from any
library, goes through ``scrub``: a phone number or email address that slipped into a message is
masked before it is written.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from gateway.recipients import scrub

REQUEST_ID: ContextVar[str | None] = ContextVar("tidings_request_id", default=None)
_PREFIX = f"{os.getpid():x}-{os.urandom(3).hex()}-"
_COUNTER = itertools.count(1)
REQUEST_ID_HEADER = b"x-request-id"


def new_request_id() -> str:
    """Unique per process run: pid, a random part, a counter (cheap on the hot path)."""
    return f"{_PREFIX}{next(_COUNTER):x}"


class MaskingFilter(logging.Filter):
    """Masks phone numbers and email addresses in the final message (arguments merged in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = scrub(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, notification_id, exc."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            body["request_id"] = request_id
        notification_id = getattr(record, "notification_id", None)
        if notification_id:
            body["notification_id"] = notification_id
        if record.exc_info:
            body["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(body, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        notification_id = getattr(record, "notification_id", None)
        extra = "".join(
            f" {k}={v}" for k, v in (("request_id", request_id), ("notification_id", notification_id)) if v
        )
        return scrub(line + extra) if record.exc_info else line + extra


def configure(level: str, fmt: str) -> None:
    """Root logging for a `tidings` command: one stderr handler, masked, text or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per provider call is noise


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-Id`` if it is sane (it goes into logs and a header), else a new one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if 0 < len(text) <= 128 and text.isprintable() and " " not in text:
                return text
            break
    return new_request_id()


class RequestIdMiddleware:
    """ASGI: set the request id for the request's log lines and answer it in ``X-Request-Id``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        token = REQUEST_ID.set(request_id)
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class Throttled:
    """A warning that repeats while a dependency is down: logged at once, then at most every ``every``
    seconds with how many were held back (a polling loop must not flood the log during an outage)."""

    def __init__(self, logger: logging.Logger, every: float = 30.0) -> None:
        self.logger = logger
        self.every = every
        self._last = -1e18
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        """Log now, or count it for the next line."""
        now = time.monotonic()
        if now - self._last < self.every:
            self._held += 1
            return
        held, self._held, self._last = self._held, 0, now
        suffix = f" ({held} more like it since the last)" if held else ""
        self.logger.warning(message + suffix, *args)

    def recovered(self) -> None:
        """The next failure is news again."""
        self._last, self._held = -1e18, 0
