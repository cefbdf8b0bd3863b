"""The real `tidings` command, run from folders that are not the project: it finds the data by one rule
(--data-dir, TIDINGS_DATA_DIR, the running dev's state file, ./var), and reading never creates a store.

The running-dev case (the state file) is in test_dev_command.py, beside the other `tidings dev` tests."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli.locate import sqlite_url
from tests.conftest import TENANT, Stack, points_expiry, wait_for
from tests.integration.test_audit_export import fill
from tests.integration.test_dev_command import tidings_command

pytestmark = pytest.mark.integration

PHONE = "13800138000"
MASKED = "+86138****8000"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any TIDINGS_* variable, with a state home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return {**env, "XDG_STATE_HOME": str(tmp_path / "state"), **extra}


def tidings(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tidings_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_audit_search_in_an_empty_folder_fails_naming_where_it_looked_and_creates_nothing(
    tmp_path: Path,
) -> None:
    here = folder(tmp_path, "empty")
    r = tidings(here, clean_env(tmp_path), "audit", "search", "--tenant", TENANT, "--address", PHONE)
    assert r.returncode == 2, r.stderr
    record = tmp_path / "state" / "tidings" / "dev.json"
    assert r.stderr == (
        f"tidings: no audit log at {here / 'var' / 'audit.sqlite3'} (data dir ./var by default:"
        f" no --data-dir, no TIDINGS_DATA_DIR, no {record}); start `tidings dev` or pass --data-dir\n"
    )
    assert r.stdout == ""
    assert list(here.iterdir()) == []  # no ./var, no empty audit.sqlite3
    assert not (tmp_path / "state").exists()  # reading writes no state either


@pytest.mark.parametrize(
    ("args", "looked_at"),
    [
        (["audit", "export", "--tenant", TENANT, "--output", "out.csv"], "audit.sqlite3"),
        (["audit", "verify"], "audit.sqlite3"),
        (["audit", "prune"], "audit.sqlite3"),
        (["optouts", "export", "--tenant", TENANT, "--output", "out.csv"], "redis.sock"),
        (["dlq", "list"], "redis.sock"),
    ],
    ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else v,
)
@pytest.mark.parametrize("chosen_by", ["--data-dir", "TIDINGS_DATA_DIR"])
def test_read_commands_fail_with_exit_2_naming_the_path_and_how_it_was_chosen(
    tmp_path: Path, args: list[str], looked_at: str, chosen_by: str
) -> None:
    here = folder(tmp_path, "here")
    data = tmp_path / "nowhere" / "data"
    if chosen_by == "--data-dir":
        r = tidings(here, clean_env(tmp_path), *args, "--data-dir", str(data))
    else:
        r = tidings(here, clean_env(tmp_path, TIDINGS_DATA_DIR=str(data)), *args)
    assert r.returncode == 2, r.stderr
    what = "no audit log" if looked_at == "audit.sqlite3" else "no Redis"
    assert r.stderr.startswith(f"tidings: {what} at {data / looked_at} (data dir from {chosen_by}); ")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert list(here.iterdir()) == [] and not (tmp_path / "nowhere").exists()


def test_a_socket_nothing_listens_on_is_exit_2_naming_it(tmp_path: Path) -> None:
    # What a `tidings dev` killed with SIGKILL leaves behind: the file, no server.
    data = folder(tmp_path, "data")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(data / "redis.sock"))
    sock.close()
    r = tidings(folder(tmp_path, "here"), clean_env(tmp_path), "dlq", "list", "--data-dir", str(data))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(
        f"tidings: Redis does not answer: Error 111 connecting to {data / 'redis.sock'}"
    )
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_tidings_data_dir_finds_the_events_from_any_folder(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    stack = stack_factory(audit_url=sqlite_url(data))  # the store a dev stack keeps in its data dir
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry(PHONE)).json()["id"]

        def receipt_stored() -> bool:
            events = c.get("/v1/audit/events", params={"address": PHONE}).json()["events"]
            return any(e["type"] == "receipt" for e in events)

        wait_for(receipt_stored, timeout=15)
    elsewhere = folder(tmp_path, "elsewhere")
    env = clean_env(tmp_path, TIDINGS_DATA_DIR=str(data))
    found = tidings(elsewhere, env, "audit", "search", "--tenant", TENANT, "--address", PHONE)
    assert found.returncode == 0, found.stderr
    events = [json.loads(line) for line in found.stdout.splitlines()]
    assert [e["type"] for e in events] == ["accepted", "compliance", "attempt", "sent", "receipt"]
    assert {e["notification_id"] for e in events} == {ntf_id}
    assert {e["address"] for e in events} == {MASKED}
    assert PHONE not in found.stdout + found.stderr
    # verify reads the same store; without the data dir's Redis it checks the chain alone.
    verified = tidings(elsewhere, env, "audit", "verify", "--tenant", TENANT)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    assert f"no Redis at {data / 'redis.sock'} (data dir from TIDINGS_DATA_DIR)" in verified.stderr
    assert list(elsewhere.iterdir()) == []


def test_audit_export_into_head_ends_quietly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(sqlite_url(data), 20_000)  # megabytes of CSV: far more than a pipe holds
    env = clean_env(tmp_path, TIDINGS_DATA_DIR=str(data))
    cmd = shlex.join([*tidings_command(), "audit", "export", "--tenant", TENANT])
    r = subprocess.run(
        ["bash", "-c", f"{cmd} | head -1; exit ${{PIPESTATUS[0]}}"],
        cwd=folder(tmp_path, "here"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("seq,id,at,type,") and r.stdout.count("\n") == 1
    assert r.stderr == ""  # no traceback, no "Exception ignored"
