"""Reminder series: starts per second beside notify accepts per second through the API, and due steps
released per second by the releaser beside the same requests accepted directly, same run.

Starting (the API): one `tidings serve` process; C clients post batches of 1,000 to
``POST /v1/series/batch`` (the catalogue's ``points_expiry``, 星耀商城, anchor 40 days ahead: three
steps planned each, two moved into best windows) and, in alternating rounds of the same count, to
``POST /v1/notify/batch`` (points-expiry SMS). Every item goes to a member of its own. Medians of
the rounds, items per second from the first post to the last answer.

Releasing (this process, the worker's code): N series whose first step is due now. Starting a
million through the API would take longer than the whole bench, so S of them (``--seeds``) are
started through ``SeriesService.start_many`` and the rest are written as copies of those hashes
under ids, members and numbers of their own, each with its first step in the due set at now (what
``series_start.lua`` writes, without its audit event). ``Releaser.release()`` is called until all N
are released (batches of ``TIDINGS_SERIES_BATCH``, 500): take the due steps, read their series,
accept them through ``Acceptor.notify_many`` and record each on its series. Beside it, before and
after, ``Acceptor.notify_many`` on the same requests the releaser builds, batches of the same size,
for ``--baseline`` other members: what accepting alone costs.

    python -m bench.series [--series 1000000] [--baseline 100000] [--rounds 3] [--batches 10]

The default million takes about 15 minutes on the 2-core development machine (some 1,500 steps
released a second); ``--series 200000`` gives the same rates in about 4.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.common import ROOT, median, process, python, redis_for_bench
from bench.deliver import POLICY
from bench.ingest import _MAKE_KEY
from gateway import metrics
from gateway.ids import new_id
from gateway.models import NotifyRequest, Recipient
from gateway.series.model import SeriesRequest
from gateway.series.planning import days_left, expires_on
from gateway.series.releaser import Releaser
from gateway.services import Core, build_services
from gateway.settings import Settings, load_settings
from gateway.state import keys
from gateway.state.redisdb import free_port

KEY = "bench-key-0123456789"
SLICES = 5  # the release in slices, a direct-accept measurement before each and after the last
TENANT = "bench"
BRAND = "星耀商城"
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄丽"]
ANCHOR = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
# Mobile prefixes, one range of 100,000,000 members each: every measurement sends to members of its own.
PREFIXES = [str(p) for p in (*range(130, 140), *range(150, 160), *range(180, 190))]


def phone(prefix: int, i: int) -> str:
    return f"{PREFIXES[prefix]}{i:08d}"


# -- starting, through the API ---------------------------------------------------------------------
def post_batches(
    api_url: str, path: str, bodies: list[dict[str, Any]], clients: int, ok: Callable[[dict[str, Any]], bool]
) -> float:
    """Items/s of posting every body from ``clients`` threads; every result must be ``ok``."""
    done: list[int] = []
    lock = threading.Lock()
    bad: list[Any] = []

    def client(part: list[dict[str, Any]]) -> None:
        try:
            with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as c:
                for body in part:
                    r = c.post(path, json=body)
                    r.raise_for_status()
                    results = r.json()["results"]
                    wrong = [x for x in results if not ok(x)]
                    with lock:
                        done.append(len(results) - len(wrong))
                        bad.extend(wrong[:1])
        except Exception as exc:  # a thread's exception would only be printed: fail the bench
            with lock:
                bad.append(repr(exc))

    threads = [threading.Thread(target=client, args=(bodies[k::clients],)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if bad:  # a refused item costs less than an accepted one: the rate would flatter
        raise SystemExit(f"{path}: {len(bad)} batch(es) with items refused, e.g. {bad[0]}")
    return sum(done) / seconds


def series_bodies(prefix: int, batches: int) -> list[dict[str, Any]]:
    defaults = {"definition": "points_expiry", "brand": BRAND, "anchor_at": ANCHOR.isoformat()}
    return [
        {
            "defaults": defaults,
            "items": [
                {
                    "to": {"phone": phone(prefix, i)},
                    "params": {"name": NAMES[i % len(NAMES)], "points": 1000 + i % 9000},
                    "key": f"ledger-{prefix}-{i}",
                }
                for i in range(b * 1000, (b + 1) * 1000)
            ],
        }
        for b in range(batches)
    ]


def notify_bodies(prefix: int, batches: int) -> list[dict[str, Any]]:
    defaults = {
        "channel": "sms",
        "category": "marketing",
        "brand": BRAND,
        "template": "points_expiry",
        "params": {"name": "会员", "points": 2000, "days": 40},
    }
    return [
        {
            "defaults": defaults,
            "items": [{"to": {"phone": phone(prefix, i)}} for i in range(b * 1000, (b + 1) * 1000)],
        }
        for b in range(batches)
    ]


def queued(result: dict[str, Any]) -> bool:
    return result.get("status") == "queued"


def started_new(result: dict[str, Any]) -> bool:
    return result.get("http_status") == 201


def starting(url: str, env: dict[str, str], args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """(notify items/s, series started/s) per round, alternating."""
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    notify_rates: list[float] = []
    series_rates: list[float] = []
    with process(
        python("-m", "gateway.cli", "serve", "--port", str(api_port)), env=env, ready_url=f"{api_url}/healthz"
    ):
        post_batches(api_url, "/v1/notify/batch", notify_bodies(len(PREFIXES) - 1, 2), args.clients, queued)
        post_batches(
            api_url, "/v1/series/batch", series_bodies(len(PREFIXES) - 1, 2), args.clients, started_new
        )
        for r in range(args.rounds):
            notify_rates.append(
                post_batches(
                    api_url, "/v1/notify/batch", notify_bodies(2 * r, args.batches), args.clients, queued
                )
            )
            series_rates.append(
                post_batches(
                    api_url,
                    "/v1/series/batch",
                    series_bodies(2 * r + 1, args.batches),
                    args.clients,
                    started_new,
                )
            )
    return notify_rates, series_rates


# -- releasing, in this process --------------------------------------------------------------------
async def due_series(core: Core, n: int, seeds: int) -> None:
    """n series of ``points_expiry`` whose first step is due now: ``seeds`` started for real, the rest
    copies of their hashes (own id, member and number)."""
    started = await core.series.start_many(
        TENANT,
        [
            SeriesRequest(
                definition="points_expiry",
                to=Recipient(phone=phone(20, i)),
                anchor_at=ANCHOR,
                brand=BRAND,
                params={"name": NAMES[i % len(NAMES)], "points": 1000 + i},
            )
            for i in range(seeds)
        ],
    )
    ids = [body["id"] for status, body in started if status == 201]
    if len(ids) != seeds:
        raise SystemExit(f"seed series not started: {[b for s, b in started if s != 201][:1]}")
    r = core.redis
    # Their planned steps go; every series' first step is due now instead.
    await r.delete(keys.series_due(TENANT))
    now = time.time()
    seeded = []
    for sid in ids:
        raw = await r.hgetall(keys.series(TENANT, sid))
        seeded.append([x for kv in raw.items() for x in kv])
    await r.zadd(keys.series_due(TENANT), {f"{sid}|1": now for sid in ids})
    ttl = int(ANCHOR.timestamp() - now) + 30 * 86_400
    copy = r.register_script(COPY)
    encode = msgspec.json.Encoder()
    for k, start in enumerate(range(seeds, n, 2000)):
        seed = seeded[k % seeds]
        argv: list[Any] = [len(seed) // 2, *seed, ttl, repr(now)]
        for i in range(start, min(n, start + 2000)):
            number = "+86" + phone(20, i)
            sid = new_id("ser")
            member = core.members.of(number)
            argv += (
                keys.series(TENANT, sid),
                sid,
                member,
                number[:6] + "****" + number[-4:],
                encode.encode(Recipient(phone=number)).decode(),
                keys.member_series(TENANT, member),
            )
        await copy(keys=[keys.series_due(TENANT)], args=argv)


# Copies of a seed series (its field/value pairs first), each with its own id, member, masked number
# and recipient, its first step due now. Keys are passed as values: the bench runs on one Redis.
COPY = """
local m = tonumber(ARGV[1])
local base = {}
for i = 2, 1 + 2 * m do base[#base + 1] = ARGV[i] end
local ttl, now = ARGV[2 + 2 * m], ARGV[3 + 2 * m]
for j = 4 + 2 * m, #ARGV, 6 do
  local key, id = ARGV[j], ARGV[j + 1]
  redis.call('HSET', key, unpack(base))
  redis.call('HSET', key, 'id', id, 'member', ARGV[j + 2], 'masked', ARGV[j + 3], 'to', ARGV[j + 4])
  redis.call('EXPIRE', key, ttl)
  redis.call('SADD', ARGV[j + 5], id)
  redis.call('ZADD', KEYS[1], now, id .. '|1')
end
return 0
"""


async def release_some(releaser: Releaser, n: int) -> float:
    """Seconds of ``Releaser.release()`` called until n more are released."""
    released = 0
    started = time.perf_counter()
    while released < n:
        got = await releaser.release(TENANT)
        if not got:
            raise SystemExit(f"only {released:,} of {n:,} steps released")
        released += got
    return time.perf_counter() - started


def step_request(i: int, prefix: int, now: float) -> NotifyRequest:
    """What the releaser builds for a first step, to a member of the baseline's own."""
    anchor = ANCHOR.timestamp()
    return NotifyRequest(
        to=Recipient(phone=phone(prefix, i)),
        channel="sms",
        fallback=[],
        category="marketing",
        brand=BRAND,
        template="points_expiry_30d",
        params={
            "name": NAMES[i % len(NAMES)],
            "points": 1000 + i,
            "expires_on": expires_on(anchor, "Asia/Shanghai"),
            "days_left": days_left(anchor, now),
        },
        expires_at=ANCHOR,
        idempotency_key=f"series:base-{prefix}-{i}:d30",
        metadata={"series_id": f"base-{prefix}-{i}", "series_step": "d30"},
    )


async def accept_all(core: Core, n: int, batch: int, prefix: int, part: int) -> float:
    """Notifies/s of ``Acceptor.notify_many`` on n such requests, ``batch`` at a time (members from
    ``part * 1,000,000`` on: each part to members of its own)."""
    now = time.time()
    started = time.perf_counter()
    first = part * 1_000_000
    for start in range(first, first + n, batch):
        reqs: list[Any] = [step_request(i, prefix, now) for i in range(start, min(first + n, start + batch))]
        answers = await core.acceptor.notify_many(TENANT, reqs)
        wrong = [a for a in answers if a.status != 202]
        if wrong:
            raise SystemExit(f"baseline notify not accepted: {wrong[0].status} {wrong[0].body}")
    return n / (time.perf_counter() - started)


def releasing(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The releaser on N due steps in ``SLICES`` slices, the direct accepts before each and after the last."""

    async def run() -> dict[str, Any]:
        core = build_services(settings, url)
        batch = settings.series_batch
        try:
            out: dict[str, Any] = {"release": [], "accept": []}
            t = time.perf_counter()
            await due_series(core, args.series, args.seeds)
            out["setup"] = time.perf_counter() - t
            await accept_all(core, 2000, batch, 23, 0)  # warm-up: templates, scripts, connections
            releaser = Releaser(core.series, core.acceptor, batch=batch)
            each, rest = divmod(args.series, SLICES)
            for k in range(SLICES):
                out["accept"].append(await accept_all(core, args.baseline // SLICES, batch, 21, k))
                n = each + (rest if k == SLICES - 1 else 0)
                out["release"].append((n, await release_some(releaser, n)))
                rate = n / out["release"][-1][1]
                print(f"  slice {k + 1}/{SLICES}: {rate:,.0f} steps released/s", file=sys.stderr, flush=True)
            out["accept"].append(await accept_all(core, args.baseline // SLICES, batch, 21, SLICES))
            out["sent"] = (
                metrics.REGISTRY.get_sample_value("tidings_series_steps_total", {"outcome": "sent"}) or 0
            )
            out["left"] = await core.redis.zcard(keys.series_due(TENANT))
            return out
        finally:
            await core.aclose()

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1_000_000, help="due steps released")
    ap.add_argument(
        "--baseline", type=int, default=100_000, help="notifies accepted directly, spread over the slices"
    )
    ap.add_argument("--seeds", type=int, default=1000, help="series started for real; the rest are copies")
    ap.add_argument("--rounds", type=int, default=3, help="alternating notify/series rounds through the API")
    ap.add_argument("--batches", type=int, default=10, help="batches of 1,000 per round and kind")
    ap.add_argument("--clients", type=int, default=4, help="threads posting batches")
    args = ap.parse_args()
    with redis_for_bench() as url:
        tmp = Path(tempfile.mkdtemp())
        (tmp / "policy.toml").write_text(POLICY, encoding="utf-8")
        env = {
            "TIDINGS_REDIS_URL": url,
            "TIDINGS_POLICY_PATH": str(tmp / "policy.toml"),
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_RATE_LIMIT_PER_SECOND": "1e9",
        }
        subprocess.run(python("-c", _MAKE_KEY % (url, KEY, 0)), check=True, cwd=ROOT)
        began = time.monotonic()
        notify_rates, series_rates = starting(url, env, args)
        settings = load_settings({}, redis_url=url, policy_path=str(tmp / "policy.toml"), log_level="WARNING")
        rel = releasing(settings, url, args)
        total = time.monotonic() - began
    per_round = args.batches * 1000
    notify, started = median(notify_rates), median(series_rates)
    slices = [n / t for n, t in rel["release"]]
    released = args.series / sum(t for _, t in rel["release"])
    accepted = median(rel["accept"])
    print(
        f"series: starting through one `tidings serve` process, {args.clients} clients posting batches of"
        f" 1,000, {args.rounds} alternating rounds of {per_round:,} items each, medians"
    )
    print(
        f"POST /v1/notify/batch (baseline)  {notify:>9,.0f} notifications/s   rounds {_rates(notify_rates)}"
    )
    print(
        f"POST /v1/series/batch             {started:>9,.0f} series started/s  rounds {_rates(series_rates)}"
    )
    print(f"ratio started/accepted: {started / notify:.2f}x")
    print(
        f"releasing {args.series:,} due first steps (points_expiry d30) in this process, batches of"
        f" {settings.series_batch}, in {SLICES} slices ({rel['setup']:.0f} s to write them:"
        f" {args.seeds:,} started, the rest copies)"
    )
    print(
        f"Acceptor.notify_many (baseline)   {accepted:>9,.0f} notifications/s   median of"
        f" {len(rel['accept'])}x {args.baseline // SLICES:,}, before each slice and after the last: {_rates(rel['accept'])}"
    )
    print(
        f"Releaser.release()                {released:>9,.0f} steps released/s  slices {_rates(slices)};"
        f" {rel['sent']:,.0f} sent, {rel['left']:,} left due"
    )
    print(
        f"ratio released/accepted directly: {released / accepted:.2f}x; released/POST /v1/notify/batch:"
        f" {released / notify:.2f}x; whole run {total:.0f} s"
    )
    if rel["sent"] != args.series or rel["left"]:
        raise SystemExit("steps lost or not sent")


def _rates(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    main()
