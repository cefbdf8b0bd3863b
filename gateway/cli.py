"""The ``tidings`` command: dev, serve, worker, simulator, keys, dlq."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import audit_cli, keys
from gateway.audit_cli import CliError
from gateway.settings import Settings, SettingsError, load_settings

log = logging.getLogger("tidings")


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
    try:
        result: int = args.func(settings, args)
        return result
    except CliError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """All subcommands."""
    p = argparse.ArgumentParser(
        prog="tidings", description="Notification gateway with compliance guardrails."
    )
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="embedded Redis + API + worker + provider simulator, in one command")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--sim-port", type=int, default=8081)
    dev.add_argument("--data-dir", default="./var")
    dev.set_defaults(func=cmd_dev)

    serve = sub.add_parser("serve", help="the HTTP API against TIDINGS_REDIS_URL")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="an rq worker for the channel queues against TIDINGS_REDIS_URL")
    worker.add_argument("--channels", default=",".join(keys.CHANNELS))
    worker.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    worker.set_defaults(func=cmd_worker)

    sim = sub.add_parser("simulator", help="the provider simulator alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8081)
    sim.set_defaults(func=cmd_simulator)

    lint = sub.add_parser("lint", help="check a text against the content rules (no Redis needed)")
    lint.add_argument("text")
    lint.add_argument("--brand")
    lint.add_argument("--category", choices=["marketing", "transactional"], default="marketing")
    lint.add_argument("--channel", choices=list(keys.CHANNELS), default="sms")
    lint.add_argument("--tenant")
    lint.set_defaults(func=cmd_lint)

    keys_p = sub.add_parser("keys", help="API keys")
    keys_sub = keys_p.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True)
    create.add_argument(
        "--scopes", required=True, help="comma-separated: notify,optouts,templates,audit:read,admin"
    )
    create.add_argument("--name", default="")
    create.set_defaults(func=cmd_keys_create)

    optouts = sub.add_parser("optouts", help="import and export opt-outs")
    optouts_sub = optouts.add_subparsers(dest="optouts_command", required=True)
    imp = optouts_sub.add_parser("import", help="import a CSV file (address,brand,channel), streaming")
    imp.add_argument("file")
    imp.add_argument("--tenant", required=True)
    imp.set_defaults(func=cmd_optouts_import)
    exp = optouts_sub.add_parser("export", help="export every opt-out of a tenant as CSV")
    exp.add_argument("--tenant", required=True)
    exp.add_argument("--output", help="file to write (default: standard output)")
    exp.set_defaults(func=cmd_optouts_export)

    dlq = sub.add_parser("dlq", help="the dead-letter list")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="notifications that exhausted their retries")
    dlq_list.add_argument("--tenant")
    dlq_list.set_defaults(func=cmd_dlq_list)
    replay = dlq_sub.add_parser("replay", help="queue dead letters again")
    replay.add_argument("--tenant")
    replay.add_argument("ids", nargs="*", help="ids to replay (default: all)")
    replay.set_defaults(func=cmd_dlq_replay)

    audit_redis = audit_cli.add_parsers(sub)

    for sp in (serve, worker, create, dlq_list, replay, imp, exp, *audit_redis):
        sp.add_argument(
            "--data-dir",
            default="./var",
            help="where `tidings dev` keeps its Redis (used when TIDINGS_REDIS_URL is unset)",
        )
    return p


def redis_url_for(settings: Settings, data_dir: str) -> str:
    """TIDINGS_REDIS_URL, else the socket of a running `tidings dev`."""
    if settings.redis_url:
        return settings.redis_url
    sock = Path(data_dir).resolve() / "redis.sock"
    if sock.exists():
        return f"unix://{sock}"
    raise CliError("set TIDINGS_REDIS_URL (or run `tidings dev` for an embedded Redis)")


# -- dev -----------------------------------------------------------------------------------------
def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one process: embedded Redis, API, worker, simulator. Ctrl-C stops it all."""
    from channels.simserver import Simulator
    from gateway.app import create_app
    from gateway.redisdb import EmbeddedRedis
    from gateway.servers import make_server
    from gateway.worker import run_worker

    embedded: EmbeddedRedis | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = EmbeddedRedis(args.data_dir)
        try:
            url = embedded.start()
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
    api_url = f"http://{args.host}:{args.port}"
    sim_url = f"http://{args.host}:{args.sim_port}"
    overrides: dict[str, Any] = {"simulator_url": sim_url, "public_url": api_url}
    if "TIDINGS_AUDIT_URL" not in os.environ:
        # The audit log sits beside the embedded Redis's data, wherever --data-dir puts it.
        overrides["audit_url"] = f"sqlite:///{Path(args.data_dir).resolve() / 'audit.sqlite3'}"
    settings = load_settings(**overrides)
    stop = threading.Event()
    worker_thread: threading.Thread | None = None
    try:
        asyncio.run(_ensure_key(url, settings.api_key, settings.dev_tenant))
        worker_thread = threading.Thread(
            target=run_worker, args=(settings, url), kwargs={"stop": stop}, name="tidings-worker", daemon=True
        )
        worker_thread.start()
        api = make_server(create_app(settings, url), args.host, args.port, log_level="info")
        sim = make_server(Simulator(api_url, settings.simulator_secret), args.host, args.sim_port)

        def request_exit(*_: Any) -> None:
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
                redis_shown = f"embedded, data in {embedded.data_dir}" if embedded else url
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
    finally:
        stop.set()
        if worker_thread is not None:
            worker_thread.join(8)
        if embedded is not None:
            embedded.stop()
    return 0


async def _ensure_key(url: str, key: str, tenant: str) -> None:
    from gateway.auth import SCOPES, store_key
    from gateway.redisdb import async_client

    client = async_client(url)
    try:
        await store_key(client, key, tenant, list(SCOPES), name="dev")
    finally:
        await client.aclose()


# -- separate processes --------------------------------------------------------------------------
def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """The API alone."""
    import uvicorn

    url = redis_url_for(settings, args.data_dir)
    os.environ["TIDINGS_REDIS_URL"] = url
    uvicorn.run(
        "gateway.cli:app_from_env",
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
    from gateway.app import create_app
    from gateway.logs import configure

    settings = load_settings()
    assert settings.redis_url
    configure(settings.log_level, settings.log_format)  # uvicorn's worker processes start afresh
    return create_app(settings, settings.redis_url)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """One worker process."""
    from gateway.worker import run_worker

    url = redis_url_for(settings, args.data_dir)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    unknown = sorted(set(channels) - set(keys.CHANNELS))
    if unknown or not channels:
        raise CliError(f"unknown channel(s): {', '.join(unknown) or 'none given'}")
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        from gateway.metrics import REGISTRY

        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=REGISTRY)
    run_worker(settings, url, channels, burst=args.burst)
    return 0


def cmd_simulator(settings: Settings, args: argparse.Namespace) -> int:
    """The provider simulator alone."""
    import uvicorn

    from channels.simserver import Simulator

    uvicorn.run(
        Simulator(settings.public_url, settings.simulator_secret),
        host=args.host,
        port=args.port,
        log_level="warning",
        log_config=None,
    )
    return 0


# -- opt-outs -----------------------------------------------------------------------------------
def _optouts(settings: Settings, url: str) -> Any:
    from gateway.optouts import OptOuts
    from gateway.recipients import Members
    from gateway.redisdb import async_client

    return OptOuts(async_client(url), Members(settings.hmac_key))


def cmd_optouts_import(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a CSV file into the opt-out store with a progress bar and a summary."""
    from gateway.optout_import import CsvImporter, ImportReport

    url = redis_url_for(settings, args.data_dir)
    path = Path(args.file)
    try:
        total = path.stat().st_size
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror}") from None
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, report: ImportReport) -> None:
        now = time.monotonic()
        if now - last[0] < 0.25 and done < total:
            return
        last[0] = now
        width = 30
        filled = int(width * done / total) if total else width
        rate = report.rows / max(now - started, 1e-9)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done * 100 // max(total, 1):3d}%  {report.rows:,} rows  {rate:,.0f} rows/s"
        )
        sys.stderr.flush()

    async def chunks(fh: Any) -> Any:
        while data := fh.read(1 << 20):  # a local file: each read is short
            yield data

    async def run(fh: Any) -> ImportReport:
        optouts = _optouts(settings, url)
        try:
            importer = CsvImporter(optouts, args.tenant, settings.default_region, by="cli")
            return await importer.run(chunks(fh), progress)
        finally:
            await optouts.redis.aclose()

    with path.open("rb") as fh:
        report = asyncio.run(run(fh))
    elapsed = time.monotonic() - started
    sys.stderr.write("\n")
    print(
        f"rows {report.rows:,}  imported {report.imported:,}  duplicates {report.duplicates:,}  "
        f"invalid {report.invalid_count:,}  in {elapsed:.1f} s ({report.rows / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    for bad in report.invalid[:20]:
        print(f"  line {bad['line']}: {bad['error']}")
    return 0


def cmd_optouts_export(settings: Settings, args: argparse.Namespace) -> int:
    """Every opt-out of the tenant as CSV (address,brand,channel,since,source)."""
    from gateway.optout_api import csv_line

    url = redis_url_for(settings, args.data_dir)

    async def run(out: Any) -> int:
        optouts = _optouts(settings, url)
        count = 0
        try:
            out.write("address,brand,channel,since,source\n")
            async for entry in optouts.export(args.tenant):
                out.write(csv_line(entry))
                count += 1
        finally:
            await optouts.redis.aclose()
        return count

    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            count = asyncio.run(run(fh))
    else:
        count = asyncio.run(run(sys.stdout))
    print(f"{count:,} opt-out(s) exported", file=sys.stderr)
    return 0


# -- lint ----------------------------------------------------------------------------------------
def cmd_lint(settings: Settings, args: argparse.Namespace) -> int:
    """Verdict, segments and the rendered text with offending terms marked; exit 1 when rejected."""
    from compliance.content import Draft, content_pipeline, run
    from compliance.policy import PolicyError, load_policy

    try:
        policy = load_policy(settings.policy_path)
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    rules = policy.rules(args.tenant, args.brand)
    draft = Draft(
        channel=args.channel,
        category=args.category,
        brand=args.brand,
        fields={"text": args.text},
        rules=rules,
    )
    verdict = run(content_pipeline(policy.matcher), draft)
    terms = [t for r in ([verdict.reason] if verdict else []) + draft.warnings for t in r.get("terms", [])]
    marked = args.text
    for t in sorted(terms, key=lambda t: -int(t["start"])):
        marked = f"{marked[: t['start']]}[[{marked[t['start'] : t['end']]}]]{marked[t['end'] :]}"
    print(f"verdict:  {'reject' if verdict else 'allow'}")
    for r in ([verdict.reason] if verdict else []) + draft.warnings:
        print(f"reason:   {r['code']}{' (warning)' if r.get('severity') == 'warning' else ''}: {r['detail']}")
    if terms:
        print(f"terms:    {marked}")
    if verdict is None:
        print(f"rendered: {draft.fields['text']}")
        if draft.segments is not None:
            print(f"segments: {draft.segments} ({draft.encoding}, {len(draft.fields['text'])} characters)")
    return 1 if verdict else 0


# -- keys and dead letters -----------------------------------------------------------------------
def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a key; it is shown once and stored only as a hash."""
    from gateway.auth import check_scopes, check_tenant, new_key

    try:
        check_tenant(args.tenant)
        scopes = check_scopes([s.strip() for s in args.scopes.split(",") if s.strip()])
    except ValueError as exc:
        raise CliError(str(exc)) from None
    url = redis_url_for(settings, args.data_dir)
    key = new_key()

    async def run() -> str:
        from gateway.auth import store_key
        from gateway.redisdb import async_client

        client = async_client(url)
        try:
            return await store_key(client, key, args.tenant, scopes, name=args.name)
        finally:
            await client.aclose()

    key_id = asyncio.run(run())
    print(key)
    print(
        f"# {key_id}, tenant {args.tenant}, scopes {','.join(scopes)}. Shown once: store it now.",
        file=sys.stderr,
    )
    return 0


def _store(url: str) -> Any:
    from gateway.redisdb import async_client
    from gateway.store import Store

    return Store(async_client(url), record_ttl=7 * 86_400, idempotency_ttl=86_400)


def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print the dead letters: id, tenant, channel, masked address, attempts, last error."""
    from gateway.recipients import mask_address, mask_token
    from gateway.timeutil import rfc3339

    url = redis_url_for(settings, args.data_dir)

    async def run() -> int:
        store = _store(url)
        count = 0
        try:
            tenants = [args.tenant] if args.tenant else await store.tenants()
            for tenant in tenants:
                for ntf_id, at in await store.dead_letters(tenant):
                    found = await store.get(tenant, ntf_id)
                    rec = found[0] if found else {}
                    addr = rec.get("address", "")
                    shown = (
                        mask_token(addr)
                        if rec.get("channel") == "push"
                        else mask_address(addr)
                        if addr
                        else "-"
                    )
                    print(
                        f"{ntf_id}\t{tenant}\t{rec.get('channel', '-')}\t{shown}\tattempts={rec.get('attempts', '-')}"
                        f"\terror={rec.get('error_code', '-')}\tat={rfc3339(at)}"
                    )
                    count += 1
        finally:
            await store.redis.aclose()
        print(f"{count} dead letter(s)", file=sys.stderr)
        return 0

    return asyncio.run(run())


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Reset dead letters to queued with fresh attempts and enqueue them."""
    from gateway.dispatch import Enqueuer
    from gateway.redisdb import sync_client
    from gateway.store import event
    from gateway.timeutil import system_clock

    url = redis_url_for(settings, args.data_dir)
    enqueuer = Enqueuer(sync_client(url), settings.batch_size)

    async def run() -> dict[tuple[str, str], list[str]]:
        store = _store(url)
        replayed: dict[tuple[str, str], list[str]] = {}
        try:
            tenants = [args.tenant] if args.tenant else await store.tenants()
            wanted = set(args.ids)
            for tenant in tenants:
                for ntf_id, _ in await store.dead_letters(tenant):
                    if wanted and ntf_id not in wanted:
                        continue
                    now = system_clock()
                    verdict = await store.replay(
                        tenant, ntf_id, event("replayed", source="dlq"), now, now + settings.lease_seconds
                    )
                    if verdict == "queued":
                        found = await store.get(tenant, ntf_id)
                        channel = found[0]["channel"] if found else "sms"
                        replayed.setdefault((tenant, channel), []).append(ntf_id)
        finally:
            await store.redis.aclose()
        return replayed

    replayed = asyncio.run(run())
    if replayed:
        from gateway.health import close_circuits

        # Replaying says the cause is fixed: give every provider a fresh circuit (a provider that
        # still fails opens again after a few sends).
        close_circuits(enqueuer.connection)
    total = 0
    for (tenant, channel), ids in replayed.items():
        enqueuer.enqueue(tenant, channel, ids)
        total += len(ids)
    print(f"replayed {total} dead letter(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
