"""Delivered messages per second through one worker to the simulator, beside rq's no-op job rate, same run.

Baseline: rq's one-job-per-message model at its cheapest: N no-op jobs drained
by one SimpleWorker process (burst mode), timed inside that process.

Tidings: N points-expiry SMS accepted through the batch endpoint, then one
`tidings worker` process drains them to the simulator (zero latency); the
rate is taken from the simulator's receive times of the first and last
message. The API stays up to take the simulator's delivery receipts.

    python bench/deliver.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.common import ROOT, process, python, redis_for_bench
from gateway.state.redisdb import free_port

KEY = "bench-key-0123456789"
# Delivery throughput, not quiet hours: without this, marketing accepted at night in China is held
# until 08:00 and the run never ends. The brand the requests use is registered, as every sending
# brand must be.
POLICY = """
[brands."星耀商城"]

[defaults]
monthly_cap = 4
cap_categories = ["marketing"]
quiet_start = "00:00"
quiet_end = "00:00"
quiet_categories = ["marketing"]
unsubscribe_footer = "拒收请回复R"
max_sms_chars = 500
"""

BASELINE = """
import sys, time
import redis
from rq import Queue, SimpleWorker
conn = redis.Redis.from_url(sys.argv[1])
q = Queue("bench-noop", connection=conn)
n = int(sys.argv[2])
q.enqueue_many([Queue.prepare_data("bench.noop.noop", args=(i,), result_ttl=0) for i in range(n)])
w = SimpleWorker([q], connection=conn)
t = time.perf_counter()
w.work(burst=True, logging_level="WARNING")
print(n / (time.perf_counter() - t))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--baseline-jobs", type=int, default=5_000)
    args = ap.parse_args()
    n = args.messages
    with redis_for_bench() as url:
        out = subprocess.run(
            python("-c", BASELINE, url, str(args.baseline_jobs)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        baseline = float(out.stdout.strip().splitlines()[-1])

        from bench.ingest import _MAKE_KEY

        subprocess.run(python("-c", _MAKE_KEY % (url, KEY, 0)), check=True, cwd=ROOT)
        api_port, sim_port = free_port(), free_port()
        policy = Path(tempfile.mkdtemp()) / "policy.toml"
        policy.write_text(POLICY, encoding="utf-8")
        env = {
            "TIDINGS_POLICY_PATH": str(policy),
            "TIDINGS_AUDIT_URL": f"sqlite:///{policy.parent}/audit.sqlite3",
            "TIDINGS_REDIS_URL": url,
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}",
            "TIDINGS_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        }
        api_url, sim_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
        with (
            process(
                python("-m", "gateway.cli", "serve", "--port", str(api_port)),
                env=env,
                ready_url=f"{api_url}/healthz",
            ),
            process(
                python("-m", "gateway.cli", "simulator", "--port", str(sim_port)),
                env=env,
                ready_url=f"{sim_url}/healthz",
            ),
        ):
            defaults = {
                "channel": "sms",
                "brand": "星耀商城",
                "template": "points_expiry",
                "params": {"name": "会员", "points": 100, "days": 7},
            }
            with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
                for start in range(0, n, 1000):
                    items = [{"to": {"phone": f"138{i:08d}"}} for i in range(start, min(n, start + 1000))]
                    r = c.post("/v1/notify/batch", json={"defaults": defaults, "items": items})
                    r.raise_for_status()
                    refused = [x for x in r.json()["results"] if x["status"] != "queued"]
                    if refused:  # nothing would ever arrive: say why instead of waiting ten minutes
                        raise SystemExit(f"{len(refused)} of the batch not queued: {refused[0]}")
            started = time.monotonic()
            with process(python("-m", "gateway.cli", "worker"), env=env):
                while httpx.get(f"{sim_url}/stats").json()["messages"] < n:
                    if time.monotonic() - started > 600:
                        raise SystemExit("delivery did not finish in 10 minutes")
                    time.sleep(0.2)
            messages = httpx.get(f"{sim_url}/messages", timeout=60).json()
    times = sorted(datetime.fromisoformat(m["received_at"]) for m in messages)
    span = (times[-1] - times[0]).total_seconds()
    rate = (len(times) - 1) / span
    refs = {m["reference"] for m in messages}
    print(f"deliver: {n} SMS, one worker process, simulator at zero latency, API taking receipts")
    print(
        f"rq no-op, one job per message    {baseline:>9.0f} jobs/s    ({args.baseline_jobs} jobs, SimpleWorker burst)"
    )
    print(
        f"tidings worker -> simulator      {rate:>9.0f} msgs/s    ({len(messages)} messages, {len(refs)} distinct, {span:.1f} s)"
    )
    print(f"ratio delivered/no-op: {rate / baseline:.2f}x   (target >= 2x)")
    if len(refs) != n or len(messages) != n:
        raise SystemExit("messages lost or doubled")
    _ = json


if __name__ == "__main__":
    main()
