"""Running ASGI apps with uvicorn, in the main loop or in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Generator
from typing import Any

import uvicorn


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """The owner decides when to stop (``should_exit``)."""
        yield


def make_server(
    app: Any, host: str, port: int, *, log_level: str = "warning", access_log: bool = False
) -> QuietServer:
    """A uvicorn server for an ASGI app."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
        log_config=None,  # uvicorn's lines go through our handlers (format, masking)
    )
    return QuietServer(config)


class ServerThread(threading.Thread):
    """Serve an ASGI app from a background thread (tests, benchmarks)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        super().__init__(name=f"uvicorn-{port}", daemon=True)
        self.server = make_server(app, host, port)
        self.url = f"http://{host}:{port}"

    def run(self) -> None:
        """Serve until stopped."""
        asyncio.run(self.server.serve())

    def start_and_wait(self, timeout: float = 10.0) -> ServerThread:
        """Start and wait until the server listens."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def request_stop(self) -> None:
        """Ask it to stop gracefully, without waiting (several servers then stop side by side)."""
        self.server.should_exit = True

    def stop(self) -> None:
        """Stop gracefully and wait."""
        self.request_stop()
        self.join(10)
