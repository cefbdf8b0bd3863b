"""``tidings dev``: embedded Redis, API, worker and provider simulator in one command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

from gateway.cli.common import DEFAULT_DATA_DIR
from gateway.errors import CliError
from gateway.settings import Settings, load_settings


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``dev`` command (it starts its own Redis: no ``--data-dir`` look-up)."""
    dev = sub.add_parser("dev", help="embedded Redis + API + worker + provider simulator, in one command")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--sim-port", type=int, default=8081)
    dev.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    dev.set_defaults(func=cmd_dev)
    return []


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one process: embedded Redis, API, worker, simulator. Ctrl-C stops it all."""
    from gateway.delivery.worker import run_worker
    from gateway.state.redisdb import EmbeddedRedis

    embedded: EmbeddedRedis | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = EmbeddedRedis(args.data_dir)
        try:
            url = embedded.start()
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
    settings = _dev_settings(args)
    stop = threading.Event()
    worker_thread: threading.Thread | None = None
    try:
        asyncio.run(_ensure_key(url, settings.api_key, settings.dev_tenant))
        worker_thread = threading.Thread(
            target=run_worker, args=(settings, url), kwargs={"stop": stop}, name="tidings-worker", daemon=True
        )
        worker_thread.start()
        redis_shown = f"embedded, data in {embedded.data_dir}" if embedded else url
        _serve_api_and_simulator(settings, args, url, redis_shown, stop)
    finally:
        # The worker first (it finishes its batch, closes the audit store), Redis last.
        stop.set()
        if worker_thread is not None:
            worker_thread.join(8)
        if embedded is not None:
            embedded.stop()
    print("Tidings stopped.", flush=True)
    return 0


def _dev_settings(args: argparse.Namespace) -> Settings:
    """The settings of a dev stack: the simulator as provider, the audit log beside the data."""
    overrides: dict[str, Any] = {
        "simulator_url": f"http://{args.host}:{args.sim_port}",
        "public_url": f"http://{args.host}:{args.port}",
    }
    if "TIDINGS_AUDIT_URL" not in os.environ:
        # The audit log sits beside the embedded Redis's data, wherever --data-dir puts it.
        overrides["audit_url"] = f"sqlite:///{Path(args.data_dir).resolve() / 'audit.sqlite3'}"
    return load_settings(**overrides)


def _serve_api_and_simulator(
    settings: Settings, args: argparse.Namespace, url: str, redis_shown: str, stop: threading.Event
) -> None:
    """Run the API and the simulator until Ctrl-C (twice: at once); say where everything is.

    The first Ctrl-C also tells the worker to finish, so it winds down while the servers do."""
    from channels.simserver import Simulator
    from gateway.api.app import create_app
    from gateway.api.servers import make_server

    api_url, sim_url = settings.public_url, settings.simulator_url
    api = make_server(create_app(settings, url), args.host, args.port, log_level="info")
    sim = make_server(Simulator(api_url, settings.simulator_secret), args.host, args.sim_port)

    def request_exit(*_: Any) -> None:
        stop.set()
        if api.should_exit:
            api.force_exit = sim.force_exit = True
        api.should_exit = sim.should_exit = True

    signal.signal(signal.SIGINT, request_exit)
    signal.signal(signal.SIGTERM, request_exit)

    async def both() -> None:
        tasks = [asyncio.create_task(api.serve()), asyncio.create_task(sim.serve())]
        while not (api.started and sim.started):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        if api.started and sim.started:
            print(
                f"\nTidings is up.\n  API        {api_url}   (OpenAPI: {api_url}/schema/openapi.json)\n"
                f"  simulator  {sim_url}/messages\n  API key    {settings.api_key}   (tenant {settings.dev_tenant})\n"
                f"  redis      {redis_shown}\n  audit log  {settings.audit_url}\n"
                "Ctrl-C stops everything.\n",
                flush=True,
            )
        else:
            api.should_exit = sim.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(both())
    if not (api.started and sim.started):
        raise CliError(f"could not listen on {api_url} and {sim_url} (ports in use?)")


async def _ensure_key(url: str, key: str, tenant: str) -> None:
    from gateway.api.auth import SCOPES, store_key
    from gateway.state.redisdb import async_client

    client = async_client(url)
    try:
        await store_key(client, key, tenant, list(SCOPES), name="dev")
    finally:
        await client.aclose()
