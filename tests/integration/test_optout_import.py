"""CSV import and export of opt-outs: streaming, counts, invalid lines, and the CLI with its progress bar."""

from __future__ import annotations

import csv
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TENANT, Stack, make_key, points_expiry, wait_for

pytestmark = pytest.mark.integration

CSV = """address,brand,channel
13812340001,星耀商城,
+86 138-1234-0002,,sms
lina@example.com,,email
13812340001,星耀商城,
not-a-number,,
13812340003,,fax
12345
13812340004,a,b,c
"""


def test_import_counts_duplicates_and_invalid_lines_then_export(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/v1/optouts/import", content=CSV.encode(), headers={"content-type": "text/csv"})
        assert r.status_code == 200, r.text
        report = r.json()
        assert (report["imported"], report["duplicates"], report["invalid_count"], report["rows"]) == (
            3,
            1,
            4,
            8,
        )
        assert [i["line"] for i in report["invalid"]] == [6, 7, 8, 9]
        assert "channel must be one of" in report["invalid"][1]["error"]
        assert c.post("/v1/notify", json=points_expiry(phone="13812340001")).json()["status"] == "suppressed"
        # Full addresses only when asked for explicitly; masked otherwise.
        exported = c.get("/v1/optouts/export", params={"include": "addresses"})
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"  # one charset
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        masked = list(csv.DictReader(io.StringIO(c.get("/v1/optouts/export").text)))
        bad = c.get("/v1/optouts/export", params={"include": "everything"})
        assert (
            bad.status_code == 400
            and bad.json()["code"] == "invalid_parameter"
            and bad.json()["status"] == 400
        )
    assert sorted(r["address"] for r in rows) == ["+8613812340001", "+8613812340002", "lina@example.com"]
    assert {r["source"] for r in rows} == {"import"}
    assert sorted(r["address"] for r in masked) == ["+86138****0001", "+86138****0002", "l***@example.com"]
    # Without the optouts scope there is no export at all.
    make_key(stack.redis_url, "notify-only-key-654321", TENANT, ["notify"])
    with stack.client("notify-only-key-654321") as c:
        refused = c.get("/v1/optouts/export", params={"include": "addresses"})
        assert refused.status_code == 403 and refused.json()["status"] == 403
    # Each export is an audit event, saying whether it carried the addresses and which key asked.
    with stack.client() as c:
        found = wait_for(
            lambda: (
                len(e := c.get("/v1/audit/events", params={"type": "optouts_exported"}).json()["events"]) == 2
                and e
            ),
            timeout=15,
        )
    assert sorted(e["data"]["include_addresses"] for e in found) == [False, True]
    assert {e["data"]["via"] for e in found} == {"api"} and all(e["data"]["by"] for e in found)


def test_cli_import_with_progress_and_summary(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("address,brand,channel\n")
        for i in range(20_000):
            fh.write(f"137{i:08d},星耀商城,\n")
        fh.write("garbage-line,,\n")
    env = {**os.environ, "TIDINGS_REDIS_URL": stack.redis_url, "TIDINGS_HMAC_KEY": stack.settings.hmac_key}
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "optouts", "import", str(path), "--tenant", "acme"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "imported 20,000" in out.stdout and "invalid 1" in out.stdout and "line 20002" in out.stdout
    assert "100%" in out.stderr and "rows/s" in out.stderr
    with stack.client() as c:
        assert c.get("/v1/optouts/13700019999").json()["opted_out"] is True
    exported = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "optouts", "export", "--tenant", "acme", "--include-addresses"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 20_001
    assert "+8613700019999" in exported.stdout
    masked = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "optouts", "export", "--tenant", "acme"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert masked.returncode == 0 and "+86137****9999" in masked.stdout
    assert "+8613700019999" not in masked.stdout and "13700019999" not in masked.stdout
    # `| head -1` (20,000 lines: more than a pipe holds) ends quietly: no traceback, exit 0.
    cmd = shlex.join([sys.executable, "-m", "gateway.cli", "optouts", "export", "--tenant", "acme"])
    headed = subprocess.run(
        ["bash", "-c", f"{cmd} | head -1; exit ${{PIPESTATUS[0]}}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert headed.returncode == 0, headed.stderr
    assert headed.stdout == "address,brand,channel,since,source\n" and headed.stderr == ""
