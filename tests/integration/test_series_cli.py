"""`tidings series import|show`: the real command against the test Redis, its counts, and flat memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from gateway.state import keys
from tests.conftest import ROOT, TENANT, Stack

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")
BRAND = "星耀商城"
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄丽"]


def cli_env(stack: Stack) -> dict[str, str]:
    """The CLI on the stack's Redis, with its member key (the API finds the members it starts) and policy."""
    return {
        **os.environ,
        "TIDINGS_REDIS_URL": stack.redis_url,
        "TIDINGS_HMAC_KEY": stack.settings.hmac_key,
        "TIDINGS_POLICY_PATH": stack.settings.policy_path,
    }


def tidings(stack: Stack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env=cli_env(stack),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_csv(path: Path, rows: int, anchor: datetime, *, invalid: Sequence[str] = ()) -> None:
    """A ledger's expiry file: phone, anchor_at, key, then the params (name, points); bad lines last."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("phone,anchor_at,key,name,points\n")
        at = anchor.isoformat(timespec="seconds")
        for i in range(rows):
            fh.write(f"137{i:08d},{at},ledger-{i},{NAMES[i % len(NAMES)]},{1000 + i % 9000}\n")
        for line in invalid:
            fh.write(line + "\n")


def series_id(rdb: redis.Redis, key: str) -> str:
    found = rdb.get(keys.series_key(TENANT, key))
    assert found is not None, key
    return found.decode()


def test_cli_import_starts_series_counts_duplicates_and_lists_invalid_lines(
    stack: Stack, rdb: redis.Redis, tmp_path: Path
) -> None:
    anchor = datetime.now(SH).replace(microsecond=0) + timedelta(days=40)
    path = tmp_path / "expiry.csv"
    write_csv(
        path,
        50,
        anchor,
        invalid=[
            f"not-a-phone,{anchor.isoformat()},ledger-x,孙丽,500",  # line 52
            "13700000999,2026-13-45,ledger-y,周杰,500",  # line 53: no such date
        ],
    )
    out = tidings(
        stack,
        "series",
        "import",
        str(path),
        "--definition",
        "points_expiry",
        "--tenant",
        TENANT,
        "--brand",
        BRAND,
    )
    assert out.returncode == 0, out.stderr
    assert "rows 52  started 50  duplicates 0  invalid 2" in out.stdout, out.stdout
    lines = out.stdout.splitlines()
    assert lines[1].startswith("  line 52: invalid_recipient") and lines[2].startswith("  line 53: "), lines
    assert "100%" in out.stderr and "rows/s" in out.stderr
    # Each row is a series the API shows: the member masked, the steps planned 30 and 7 days (best
    # windows) and 1 day before the anchor, the params from the row's columns.
    sid = series_id(rdb, "ledger-7")
    with stack.client() as c:
        view = c.get(f"/v1/series/{sid}").json()
    assert (view["definition"], view["status"], view["to"], view["brand"]) == (
        "points_expiry",
        "active",
        "+86137****0007",
        BRAND,
    )
    assert view["params"] == {"name": "黄丽", "points": "1007"}  # CSV cells are text
    assert [s["name"] for s in view["steps"]] == ["d30", "d7", "d1"]
    assert [s["status"] for s in view["steps"]] == ["pending"] * 3
    assert datetime.fromisoformat(view["anchor_at"]) == anchor
    assert rdb.zcard(keys.series_due(TENANT)) == 150
    # The same file again starts nothing: every valid row is a duplicate of its key.
    again = tidings(
        stack,
        "series",
        "import",
        str(path),
        "--definition",
        "points_expiry",
        "--tenant",
        TENANT,
        "--brand",
        BRAND,
    )
    assert again.returncode == 0, again.stderr
    assert "rows 52  started 0  duplicates 50  invalid 2" in again.stdout, again.stdout
    # `series show` prints what the API answers; an exit event from the API ends a series the CLI started.
    shown = tidings(stack, "series", "show", sid, "--tenant", TENANT)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == view and "13700000007" not in shown.stdout
    with stack.client() as c:
        r = c.post(
            "/v1/events", json={"type": "points_redeemed", "to": {"phone": "13700000007"}, "brand": BRAND}
        )
        assert r.json()["ended"] == [sid]


def test_cli_import_refusals_are_one_line_and_exit_2(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "expiry.csv"
    write_csv(path, 3, datetime.now(SH) + timedelta(days=40))
    no_header = tmp_path / "no-header.csv"
    no_header.write_text("13700000001,2027-01-01T00:00:00+08:00\n", encoding="utf-8")
    cases: list[tuple[list[str], str]] = [
        (
            ["import", str(path), "--definition", "nope"],
            "no series definition named 'nope' for tenant 'acme'",
        ),
        (
            ["import", str(no_header), "--definition", "points_expiry"],
            "the header row must name a phone or email",
        ),
        (
            ["import", str(tmp_path / "missing.csv"), "--definition", "points_expiry"],
            "No such file or directory",
        ),
        (["show", "ser_nope"], "no series 'ser_nope' for tenant 'acme'"),
    ]
    for args, said in cases:
        out = tidings(stack, "series", *args, "--tenant", TENANT)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert said in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert out.stderr.strip().splitlines()[-1].startswith("tidings: "), out.stderr


def _peak_mb(pid: int) -> float | None:
    """The process's peak RSS (VmHWM) once it runs the CLI, else None (still the forked copy of this
    process: its rusage and /proc figures would count the test runner's own memory)."""
    try:
        if b"gateway.cli" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def run_measured(stack: Stack, args: list[str], tmp_path: Path) -> tuple[int, str, float, float]:
    """Run the CLI; (exit code, stdout, seconds, peak RSS in MB of that process alone)."""
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    started = time.monotonic()
    peak = 0.0
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=cli_env(stack), stdout=out, stderr=err
        )
        while proc.poll() is None:
            peak = max(peak, _peak_mb(proc.pid) or 0.0)
            time.sleep(0.05)
    seconds = time.monotonic() - started
    assert peak > 0, "the CLI's memory was never read"
    return (proc.returncode, out_path.read_text() + err_path.read_text()[-2000:], seconds, peak)


# A million would take about 10 minutes at the ~1,760 rows/s measured on the development machine.
ROWS = 200_000


@pytest.mark.slow
def test_cli_import_of_many_rows_keeps_memory_flat(stack: Stack, rdb: redis.Redis, tmp_path: Path) -> None:
    anchor = datetime.now(SH) + timedelta(days=40)
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    write_csv(small, 2_000, anchor)
    write_csv(big, ROWS, anchor)
    args: list[Any] = [
        "series",
        "import",
        "--definition",
        "points_expiry",
        "--tenant",
        TENANT,
        "--brand",
        BRAND,
    ]
    code, said, _, small_rss = run_measured(stack, [*args, str(small)], tmp_path)
    assert code == 0, said
    rdb.flushdb()
    code, said, seconds, big_rss = run_measured(stack, [*args, str(big)], tmp_path)
    assert code == 0, said
    assert f"started {ROWS:,}  duplicates 0  invalid 0" in said, said
    assert rdb.zcard(keys.series_due(TENANT)) == 3 * ROWS
    print(
        f"\n{ROWS:,} rows in {seconds:.0f} s ({ROWS / seconds:,.0f} rows/s); peak RSS {big_rss:.0f} MB, {small_rss:.0f} MB for 2,000 rows"
    )
    assert big_rss < 300, big_rss
    assert big_rss - small_rss < 60, (small_rss, big_rss)  # flat: the file is never held
