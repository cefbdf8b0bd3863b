"""The one rule by which commands find the dev stack's data: flag, environment, state file, ./var."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from gateway.cli.locate import (
    DevState,
    audit_url_for,
    dev_data_dir,
    find_data_dir,
    read_state,
    redis_url_for,
    remove_state,
    state_path,
    write_state,
)
from gateway.errors import CliError
from gateway.settings import load_settings


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def _state(data_dir: Path, pid: int) -> DevState:
    return DevState(
        pid=pid,
        data_dir=str(data_dir),
        redis_url="redis://127.0.0.1:20999/0",
        audit_url=f"sqlite:///{data_dir}/audit.sqlite3",
        api_url="http://127.0.0.1:8080",
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "state")}


def test_the_state_file_follows_xdg_state_home(tmp_path: Path) -> None:
    assert state_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "tidings" / "dev.json"
    home = Path.home() / ".local" / "state" / "tidings" / "dev.json"
    assert state_path({}) == home
    assert state_path({"XDG_STATE_HOME": "relative/dir"}) == home  # invalid per the spec: ignored


def test_the_rule_flag_then_environment_then_running_dev_then_var(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    record = state_path(env)
    dev_dir = tmp_path / "dev-data"
    write_state(_state(dev_dir, os.getpid()), record)  # this process stands in for a running dev
    plain = load_settings({})
    from_env = load_settings({}, data_dir="env-data")

    flag = find_data_dir("flag-data", from_env, env)
    assert (flag.path, flag.how, flag.dev) == (tmp_path / "flag-data", "from --data-dir", None)
    by_env = find_data_dir(None, from_env, env)
    assert (by_env.path, by_env.how) == (tmp_path / "env-data", "from TIDINGS_DATA_DIR")
    by_dev = find_data_dir(None, plain, env)
    assert by_dev.path == dev_dir and by_dev.dev is not None
    assert by_dev.how == f"from {record}, the `tidings dev` running as pid {os.getpid()}"
    # The dev's own data dir named explicitly still gets the dev's recorded Redis and audit URLs.
    assert find_data_dir(str(dev_dir), plain, env).dev == by_dev.dev

    record.unlink()
    default = find_data_dir(None, plain, env)
    assert default.path == tmp_path / "var"
    assert default.how == f"./var by default: no --data-dir, no TIDINGS_DATA_DIR, no {record}"
    # `tidings dev` places its data by flag, environment and ./var, never by another dev's record.
    write_state(_state(dev_dir, os.getpid()), record)
    assert dev_data_dir(None, plain).path == tmp_path / "var"
    assert dev_data_dir(None, from_env).path == tmp_path / "env-data"
    assert dev_data_dir("x", from_env).path == tmp_path / "x"


def test_a_record_whose_pid_is_gone_or_that_is_unreadable_is_ignored(
    tmp_path: Path, env: dict[str, str]
) -> None:
    record = state_path(env)
    pid = _dead_pid()
    write_state(_state(tmp_path / "gone", pid), record)
    assert read_state(record) == (None, f"{record} names pid {pid}, which has exited")
    found = find_data_dir(None, load_settings({}), env)
    assert found.dev is None and found.how.endswith(f"{record} names pid {pid}, which has exited")
    record.write_text("{not json", encoding="utf-8")
    assert read_state(record) == (None, f"{record} is unreadable")


def test_the_record_is_private_and_only_its_owner_removes_it(tmp_path: Path, env: dict[str, str]) -> None:
    record = state_path(env)
    state = _state(tmp_path / "d", os.getpid())
    write_state(state, record)
    assert record.stat().st_mode & 0o777 == 0o600
    assert msgspec.json.decode(record.read_bytes(), type=DevState) == state
    assert [p.name for p in record.parent.iterdir()] == ["dev.json"]  # no temporary file left
    remove_state(record, os.getpid() + 1)  # a dev started since wrote its own: not ours to remove
    assert record.exists()
    remove_state(record, os.getpid())
    assert not record.exists()
    remove_state(record, os.getpid())  # nothing there: fine


def test_a_missing_store_or_socket_is_an_error_naming_the_path_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("TIDINGS_AUDIT_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    with pytest.raises(CliError) as err:
        audit_url_for(settings, "data", existing=True)
    assert str(err.value) == (
        f"no audit log at {tmp_path / 'data' / 'audit.sqlite3'} (data dir from --data-dir);"
        " start `tidings dev` or pass --data-dir"
    )
    with pytest.raises(CliError) as err:
        redis_url_for(settings, None)
    assert str(err.value).startswith(
        f"no Redis at {tmp_path / 'var' / 'redis.sock'} (data dir ./var by default"
    )
    # A writer gets the URL without a check; its store creates the file when it opens it.
    assert (
        audit_url_for(settings, "data", existing=False) == f"sqlite:///{tmp_path / 'data' / 'audit.sqlite3'}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    monkeypatch.setenv("TIDINGS_AUDIT_URL", "sqlite:///rel/audit.sqlite3")
    with pytest.raises(CliError) as err:
        audit_url_for(load_settings(), "data", existing=True)
    assert str(err.value) == (
        f"no audit log at {tmp_path / 'rel' / 'audit.sqlite3'} (from TIDINGS_AUDIT_URL); check TIDINGS_AUDIT_URL"
    )
    assert redis_url_for(load_settings({}, redis_url="redis://h:1/0"), None) == "redis://h:1/0"
