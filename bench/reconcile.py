"""``tidings optouts reconcile`` over a large audit log: seconds and max RSS of the real command.

A SQLite audit log gets ``--optouts`` ``opt_out`` events (one member each); Redis starts empty, so
the first run restores them all and the second restores none. Each run is the real command in a
subprocess, measured by ``/usr/bin/time``.

    python -m bench.reconcile [--optouts 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import redis_for_bench
from gateway.audit.backends import open_store
from gateway.audit.stream import AuditRow

TENANT = "bench"
COMMAND = ["optouts", "reconcile", "--tenant", TENANT, "--json"]
BASE_MS = 1_764_000_000_000


def fill(url: str, n: int) -> None:
    """``n`` opt_out events, 10,000 per append, as the audit consumer stores them."""
    store = open_store(url)
    body = json.dumps({"at": "2025-11-24T16:00:00.000+00:00", "source": "import", "type": "opt_out"})
    try:
        for start in range(0, n, 10_000):
            store.append(
                [
                    AuditRow(
                        TENANT, f"{BASE_MS + i}-0.0", BASE_MS + i, "opt_out", "", "", f"{i:032x}", "", body
                    )
                    for i in range(start, min(n, start + 10_000))
                ]
            )
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optouts", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, redis_for_bench() as redis_url:
        audit_url = f"sqlite:///{Path(d) / 'audit.sqlite3'}"
        fill(audit_url, args.optouts)
        env = {**os.environ, "TIDINGS_REDIS_URL": redis_url, "TIDINGS_AUDIT_URL": audit_url}
        for run in ("first", "second"):
            started = time.monotonic()
            out = subprocess.run(
                ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "gateway.cli", *COMMAND],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            report = json.loads(out.stdout)
            rss_mb = int(out.stderr.strip().splitlines()[-1]) // 1024
            print(
                f"{run} run: {time.monotonic() - started:.1f} s, max RSS {rss_mb} MB,"
                f" restored {report['restored']:,}, already present {report['already_present']:,}"
            )


if __name__ == "__main__":
    main()
