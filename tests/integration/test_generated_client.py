"""A client generated from the live OpenAPI document by a real generator reads every answer it gets."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def generated(stack: Stack, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """The package openapi-python-client writes from /schema/openapi.json, imported; and its output."""
    doc = tmp_path / "openapi.json"
    doc.write_bytes(httpx.get(f"{stack.api_url}/schema/openapi.json", timeout=10).content)
    config = tmp_path / "config.yml"
    config.write_text("post_hooks: []\n", encoding="utf-8")  # no formatter run over the output
    cli = shutil.which("openapi-python-client") or str(Path(sys.executable).parent / "openapi-python-client")
    done = subprocess.run(
        [cli, "generate", "--path", str(doc), "--meta", "none", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("tidings_client"), done.stdout + done.stderr
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "tidings_client" or m.startswith("tidings_client.")]:
            del sys.modules[name]


def test_a_generated_client_sends_reads_a_rejection_and_looks_up(
    stack: Stack, generated: tuple[Any, str]
) -> None:
    package, output = generated
    # Every operation and every answer made it into the client: the generator warned about none.
    assert "WARNING" not in output and "Cannot parse" not in output, output
    api = importlib.import_module("tidings_client.api.default")
    models = importlib.import_module("tidings_client.models")
    notify = importlib.import_module("tidings_client.api.default.notify")
    lookup = importlib.import_module("tidings_client.api.default.get_notification")
    assert {"notify", "get_notification", "put_template", "export_optouts", "audit_verify"} <= {
        p.stem for p in Path(api.__file__).parent.glob("*.py")
    }
    client = package.AuthenticatedClient(base_url=stack.api_url, token=API_KEY)

    sent = notify.sync_detailed(client=client, body=models.NotifyRequest.from_dict(points_expiry()))
    assert sent.status_code == 202, sent.content
    assert isinstance(sent.parsed, models.NotifyResult) and sent.parsed.status.value == "queued"

    banned = points_expiry(content={"text": "会员日全场最低价"})
    del banned["template"], banned["params"]
    refused = notify.sync_detailed(client=client, body=models.NotifyRequest.from_dict(banned))
    assert refused.status_code == 422
    problem = refused.parsed
    assert isinstance(problem, models.Problem), refused.content
    assert (problem.status, problem.code, problem.id) == (422, "banned_wording", None)
    assert problem.type_.endswith("/rejected") and problem.channel == "sms"
    assert problem.reasons[0].code == "banned_wording" and "最低价" in problem.reasons[0].detail

    ntf_id = sent.parsed.id
    view = wait_for(
        lambda: (v := lookup.sync(ntf_id, client=client)) is not None and v.status == "delivered" and v,
        timeout=15,
    )
    assert isinstance(view, models.NotificationView)
    assert view.id == ntf_id and view.to["phone"] == "+86138****5678"
    missing = lookup.sync_detailed("ntf_01NOSUCHNOTIFICATION0000000", client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)
    assert missing.parsed.status == 404

    # Without the key, the same client reads the 401 as a problem too.
    anonymous = package.Client(base_url=stack.api_url)
    nobody = notify.sync_detailed(client=anonymous, body=models.NotifyRequest.from_dict(points_expiry()))
    assert nobody.status_code == 401 and isinstance(nobody.parsed, models.Problem)
    assert nobody.parsed.code == "unauthorized"
