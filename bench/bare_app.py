"""The baseline: a bare Litestar endpoint that decodes the same JSON body and answers 202."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, post


@post("/v1/notify", status_code=202)
async def notify(data: dict[str, Any]) -> dict[str, Any]:
    """Decode, answer; nothing else."""
    return {"id": "ntf_bare", "status": "queued", "channel": data.get("channel")}


app = Litestar([notify], debug=False, logging_config=None)
