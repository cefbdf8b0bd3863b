"""``tidings serve|worker|simulator``: the processes of a deployment, one each."""

from __future__ import annotations

import argparse
import os
from typing import Any

import msgspec

from gateway.cli.locate import audit_url_for, redis_url_for
from gateway.errors import CliError
from gateway.models import CHANNELS
from gateway.settings import Settings, load_settings


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``serve``, ``worker`` and ``simulator`` commands; returns those that find the data dir (Redis, audit)."""
    serve = sub.add_parser("serve", help="the HTTP API against TIDINGS_REDIS_URL")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser(
        "worker",
        help="an rq worker against TIDINGS_REDIS_URL, its queues on TIDINGS_QUEUE_REDIS_URL (default: the same)",
    )
    worker.add_argument(
        "--channels", default=",".join(CHANNELS), help="comma-separated channel queues to work"
    )
    worker.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    worker.set_defaults(func=cmd_worker)

    sim = sub.add_parser("simulator", help="the provider simulator alone")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--port", type=int, default=8081, help="port to listen on")
    sim.set_defaults(func=cmd_simulator)
    return [serve, worker]


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """The API alone."""
    import uvicorn

    url = redis_url_for(settings, args.data_dir)
    # The uvicorn workers read their settings from the environment: give them what was found.
    os.environ["TIDINGS_AUDIT_URL"] = audit_url_for(settings, args.data_dir, existing=False)
    os.environ["TIDINGS_REDIS_URL"] = url
    uvicorn.run(
        "gateway.cli.serve:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=False,
        server_header=False,
        log_config=None,  # uvicorn's lines go through our handlers (format, masking)
    )
    return 0


def app_from_env() -> Any:
    """App factory for uvicorn workers (settings from the environment)."""
    from gateway.api.app import create_asgi
    from gateway.logs import configure

    settings = load_settings()
    assert settings.redis_url
    configure(settings.log_level, settings.log_format)  # uvicorn's worker processes start afresh
    return create_asgi(settings, settings.redis_url)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """One worker process."""
    from gateway.delivery.worker import run_worker

    url = redis_url_for(settings, args.data_dir)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    unknown = sorted(set(channels) - set(CHANNELS))
    if unknown or not channels:
        raise CliError(f"unknown channel(s): {', '.join(unknown) or 'none given'}")
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        from gateway.metrics import REGISTRY

        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=REGISTRY)
    audit_url = audit_url_for(settings, args.data_dir, existing=False)  # its consumer creates the store
    run_worker(msgspec.structs.replace(settings, audit_url=audit_url), url, channels, burst=args.burst)
    return 0


def cmd_simulator(settings: Settings, args: argparse.Namespace) -> int:
    """The provider simulator alone."""
    import uvicorn

    from channels.simserver import Simulator

    uvicorn.run(
        Simulator(settings.public_url, settings.simulator_secret, default_region=settings.default_region),
        host=args.host,
        port=args.port,
        log_level="warning",
        log_config=None,
    )
    return 0
