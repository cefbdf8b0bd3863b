"""``tidings dev``: embedded Redis, API, worker and provider simulator in one command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from gateway.cli.locate import (
    DataDir,
    DevState,
    dev_data_dir,
    remove_state,
    sqlite_url,
    state_path,
    write_state,
)
from gateway.errors import CliError
from gateway.settings import Settings, load_settings


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``dev`` command (it starts its own Redis: it places its data, it does not look for a dev)."""
    dev = sub.add_parser("dev", help="embedded Redis + API + worker + provider simulator, in one command")
    dev.add_argument("--host", default="127.0.0.1", help="address the API and the simulator listen on")
    dev.add_argument("--port", type=int, default=8080, help="API port")
    dev.add_argument("--sim-port", type=int, default=8081, help="provider simulator port")
    dev.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where to keep Redis's data and the audit log; default: TIDINGS_DATA_DIR, else ./var",
    )
    dev.set_defaults(func=cmd_dev)
    return []


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one process: embedded Redis, API, worker, simulator. Ctrl-C stops it all."""
    from gateway.delivery.worker import run_worker
    from gateway.state.redisdb import EmbeddedRedis

    data = dev_data_dir(args.data_dir, settings)
    embedded: EmbeddedRedis | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = EmbeddedRedis(data.path)
        try:
            url = embedded.start()
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
    settings = _dev_settings(args, data)
    record = state_path()
    state = DevState(
        pid=os.getpid(),
        data_dir=str(data.path),
        redis_url=url,
        audit_url=settings.audit_url,
        api_url=settings.public_url,
    )
    stop = threading.Event()
    worker_thread: threading.Thread | None = None
    try:
        asyncio.run(_ensure_key(url, settings.api_key, settings.dev_tenant))
        worker_thread = threading.Thread(
            target=run_worker, args=(settings, url), kwargs={"stop": stop}, name="tidings-worker", daemon=True
        )
        worker_thread.start()
        redis_shown = f"embedded, {url}" if embedded else url
        data_shown = f"{data.path}   ({data.how}; other commands find it through {record})"

        def up() -> None:
            # Once everything answers, other commands can find this stack from any folder.
            try:
                write_state(state, record)
            except OSError as exc:
                print(f"tidings: could not write {record} ({exc.strerror}): pass --data-dir", file=sys.stderr)

        _serve_api_and_simulator(settings, args, url, (redis_shown, data_shown), stop, up)
    finally:
        remove_state(record, state.pid)
        # The worker first (it finishes its batch, closes the audit store), Redis last.
        stop.set()
        if worker_thread is not None:
            worker_thread.join(8)
        if embedded is not None:
            embedded.stop()
    print("Tidings stopped.", flush=True)
    return 0


def _dev_settings(args: argparse.Namespace, data: DataDir) -> Settings:
    """The settings of a dev stack: the simulator as provider, the audit log beside the data."""
    overrides: dict[str, Any] = {
        "simulator_url": f"http://{args.host}:{args.sim_port}",
        "public_url": f"http://{args.host}:{args.port}",
    }
    if "TIDINGS_CONSOLE_SIMULATOR" not in os.environ:
        overrides["console_simulator"] = True  # the console shows what the simulator received
    if "TIDINGS_WEBHOOK_ALLOW_PRIVATE" not in os.environ:
        overrides["webhook_allow_private"] = True  # a webhook receiver on this machine, for trying it out
    if "TIDINGS_AUDIT_URL" not in os.environ:
        # The audit log sits beside the embedded Redis's data, in the data dir.
        overrides["audit_url"] = sqlite_url(data.path)
    return load_settings(**overrides)


def _serve_api_and_simulator(
    settings: Settings,
    args: argparse.Namespace,
    url: str,
    shown: tuple[str, str],
    stop: threading.Event,
    up: Callable[[], None],
) -> None:
    """Run the API and the simulator until Ctrl-C (twice: at once); once both answer, call ``up`` and
    say where everything is (``shown``: where Redis and the data are).

    The first Ctrl-C also tells the worker to finish, so it winds down while the servers do."""
    from channels.simserver import Simulator
    from gateway.api.app import create_asgi
    from gateway.api.servers import make_server

    api_url, sim_url = settings.public_url, settings.simulator_url
    api = make_server(create_asgi(settings, url), args.host, args.port, log_level="info")
    sim = make_server(
        Simulator(api_url, settings.simulator_secret, default_region=settings.default_region),
        args.host,
        args.sim_port,
    )

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
            up()
            print(
                f"\nTidings is up.\n  API        {api_url}   (OpenAPI: {api_url}/schema/openapi.json)\n"
                f"  console    {api_url}/console   (sign in with the API key)\n"
                f"  simulator  {sim_url}/messages\n  API key    {settings.api_key}   (tenant {settings.dev_tenant})\n"
                f"  data dir   {shown[1]}\n  redis      {shown[0]}\n  audit log  {settings.audit_url}\n"
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
