from __future__ import annotations

import pytest

from gateway.errors import SettingsError
from gateway.settings import load_settings


def test_defaults_and_conversion() -> None:
    s = load_settings({"TIDINGS_BATCH_SIZE": "50", "TIDINGS_LEASE_SECONDS": "2.5", "PATH": "/bin"})
    assert s.batch_size == 50 and s.lease_seconds == 2.5
    assert s.redis_url is None and s.max_batch_items == 1000


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TIDINGS_REDIS_ULR": "redis://x"}, "TIDINGS_REDIS_ULR"),
        ({"TIDINGS_BATCH_SIZE": "many"}, "TIDINGS_BATCH_SIZE"),
        ({"TIDINGS_BATCH_SIZE": "0"}, "TIDINGS_BATCH_SIZE"),
        ({"TIDINGS_DEFAULT_REGION": "china"}, "TIDINGS_DEFAULT_REGION"),
        ({"TIDINGS_IDEMPOTENCY_TTL_SECONDS": "60"}, "TIDINGS_IDEMPOTENCY_TTL_SECONDS"),
    ],
)
def test_unknown_or_malformed_variables_fail_clearly(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert needle in str(err.value)


def test_cli_reports_bad_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    monkeypatch.setenv("TIDINGS_SEND_CONCURENCY", "3")
    assert main(["dlq", "list"]) == 2
    assert "TIDINGS_SEND_CONCURENCY" in capsys.readouterr().err


def test_cli_refuses_a_bad_policy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    from pathlib import Path

    from gateway.cli.main import main

    bad = Path(str(tmp_path)) / "policy.toml"
    bad.write_text('[defaults]\nmonthly_cap = 4\nquiet_start = "25:00"\n', encoding="utf-8")
    monkeypatch.setenv("TIDINGS_POLICY_PATH", str(bad))
    assert main(["worker"]) == 2
    assert 'quiet_start must be "HH:MM"' in capsys.readouterr().err


def test_queue_redis_defaults_to_the_state_redis() -> None:
    from gateway.settings import queue_url

    s = load_settings({"TIDINGS_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert queue_url(s, "redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    s = load_settings(
        {"TIDINGS_REDIS_URL": "redis+cluster://10.0.0.1:7000", "TIDINGS_QUEUE_REDIS_URL": "redis://q:6379/0"}
    )
    assert queue_url(s, "redis+cluster://10.0.0.1:7000") == "redis://q:6379/0"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TIDINGS_REDIS_URL": "redis+cluster://10.0.0.1:7000"}, "TIDINGS_QUEUE_REDIS_URL is required"),
        (
            {"TIDINGS_REDIS_URL": "redis://x", "TIDINGS_QUEUE_REDIS_URL": "redis+cluster://10.0.0.1:7000"},
            "TIDINGS_QUEUE_REDIS_URL cannot be a redis+cluster:// URL",
        ),
    ],
)
def test_rq_never_runs_on_a_cluster(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert needle in str(err.value)
