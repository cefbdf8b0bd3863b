"""schemathesis against /schema/openapi.json: no 5xx, every answer matches its documented shape, and every status is documented."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import API_KEY, Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_schemathesis_finds_no_server_error_and_no_answer_off_its_schema(
    stack: Stack, tmp_path: Path
) -> None:
    cli = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    done = subprocess.run(
        [
            cli,
            "run",
            f"{stack.api_url}/schema/openapi.json",
            "--header",
            f"Authorization: Bearer {API_KEY}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "--max-examples",
            "30",
            "--seed",
            "2026",
            "--request-timeout",
            "10",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout[-4000:]
    assert done.returncode == 0, summary
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts and "Server error" not in summary, summary
    generated, passed = int(counts.group(1)), int(counts.group(2))
    assert generated == passed >= 500, summary  # it really exercised the API, and every case passed
