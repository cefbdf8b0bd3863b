"""Pieces every controller shares: the services of a process, auth, raw headers, JSON responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State

from gateway.accept import Acceptor
from gateway.auth import Authenticator, Principal
from gateway.optouts import OptOuts
from gateway.settings import Settings
from gateway.store import Store
from gateway.tenant_templates import TenantTemplates

_encode = msgspec.json.Encoder()
JSON = "application/json"


@dataclass
class Services:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    store: Store
    auth: Authenticator
    acceptor: Acceptor
    templates: TenantTemplates
    optouts: OptOuts


def services(state: State) -> Services:
    """The process's services."""
    svc: Services = state.services
    return svc


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    """JSON encoded by msgspec."""
    return Response(content=_encode.encode(body), status_code=status, media_type=JSON, headers=headers)


def raw_header(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """One request header straight from the ASGI scope (cheaper than building the headers mapping)."""
    for key, value in request.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def principal(request: Request[Any, Any, Any], scope: str) -> Principal:
    """Authenticate the caller and check a scope."""
    who = await services(request.app.state).auth.principal(raw_header(request, b"authorization"))
    who.require(scope)
    return who
