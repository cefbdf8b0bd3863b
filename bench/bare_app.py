"""The baseline: a bare Litestar endpoint that decodes the same JSON body and answers 202."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Response, get, post


@post("/v1/notify", status_code=202)
async def notify(data: dict[str, Any]) -> dict[str, Any]:
    """Decode, answer; nothing else."""
    return {"id": "ntf_bare", "status": "queued", "channel": data.get("channel")}


@get("/l/{code:str}", status_code=302)
async def follow(code: str) -> Response[bytes]:
    """The redirect baseline: answer 302 to a fixed target, nothing looked up."""
    return Response(b"", status_code=302, headers={"location": "https://m.xingyao.example.cn/points"})


app = Litestar([notify, follow], debug=False, logging_config=None)
