"""The web console at ``/console``: server-rendered pages for auditors and operators.

Signed in with an API key (a server-side session, see ``session``), it shows what the key's scopes
allow: notifications, members and series with ``notify``, the audit log and campaign reports with
``audit:read``, opt-out changes with ``optouts``, dead letters and provider circuits with ``admin``,
and in ``tidings dev`` what the provider simulator received.
"""

from __future__ import annotations

from litestar import Router
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from gateway.api.console import auditpages, lookup, opspages, optoutpages, pages
from gateway.api.console.render import (
    HEADERS,
    HERE,
    Refused,
    SignInRequired,
    on_http_error,
    on_refused,
    on_sign_in_required,
    template_config,
)

__all__ = ["router", "template_config"]


def router() -> Router:
    """Every console page, with its security headers and HTML error pages; kept out of the OpenAPI document."""
    return Router(
        path="/console",
        route_handlers=[
            *pages.HANDLERS,
            *lookup.HANDLERS,
            *auditpages.HANDLERS,
            *optoutpages.HANDLERS,
            *opspages.HANDLERS,
            pages.not_found,
            create_static_files_router(
                path="/static",
                directories=[HERE / "static"],
                include_in_schema=False,
            ),
        ],
        response_headers=HEADERS,
        exception_handlers={
            SignInRequired: on_sign_in_required,
            Refused: on_refused,
            HTTPException: on_http_error,
        },
        include_in_schema=False,
    )
