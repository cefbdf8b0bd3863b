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

from tests.conftest import ROOT, Stack, points_expiry

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
        exported = c.get("/v1/optouts/export")
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"  # one charset
        rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["address"] for r in rows) == ["+8613812340001", "+8613812340002", "lina@example.com"]
    assert {r["source"] for r in rows} == {"import"}


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
        [sys.executable, "-m", "gateway.cli", "optouts", "export", "--tenant", "acme"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 20_001
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
