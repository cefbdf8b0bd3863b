"""Controllers of ``/v1/templates``: the catalogue and a tenant's own templates."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, put
from litestar.params import FromPath, JSONBody

from gateway.api import views
from gateway.api.deps import json_response, principal, services
from gateway.errors import NotFound, TemplateRejected, Unprocessable


@get(
    "/v1/templates",
    summary="The catalogue and the tenant's own templates",
    responses=views.ok(views.TemplateList),
)
async def list_templates(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Every template this tenant can send, its own overriding the catalogue's by name."""
    who = await principal(request, "templates")
    svc = services(request.app.state)
    own = await svc.templates.custom(who.tenant)
    merged = {
        **{n: (t, "catalog") for n, t in svc.templates.catalog.items()},
        **{n: (t, "tenant") for n, t in own.items()},
    }
    items = [{**t.describe(), "source": src} for _, (t, src) in sorted(merged.items())]
    return json_response({"templates": items})


@get("/v1/templates/{name:str}", summary="One template", responses=views.ok(views.TemplateView))
async def get_template(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """The template with its variants and params."""
    who = await principal(request, "templates")
    svc = services(request.app.state)
    own = await svc.templates.custom(who.tenant)
    if name in own:
        return json_response({**own[name].describe(), "source": "tenant"})
    if name in svc.templates.catalog:
        return json_response({**svc.templates.catalog[name].describe(), "source": "catalog"})
    raise NotFound("template_not_found", f"no template named {name!r}")


class TemplateDocument(msgspec.Struct, forbid_unknown_fields=True):
    """The body of PUT /v1/templates/{name}: the catalogue file's fields as JSON."""

    category: str = "marketing"
    description: str = ""
    params: dict[str, dict[str, Any]] = {}
    sms: dict[str, Any] | None = None
    mms: dict[str, Any] | None = None
    push: dict[str, Any] | None = None
    email: dict[str, Any] | None = None


@put(
    "/v1/templates/{name:str}",
    status_code=200,
    summary="Create or replace a template",
    responses=views.ok(views.TemplateView),
)
async def put_template(
    request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[TemplateDocument]
) -> Response[bytes]:
    """Refused (422) when any variant fails the content rules, with the same reasons as a notify."""
    who = await principal(request, "templates")
    if not (0 < len(name) <= 128 and name.replace("_", "").replace("-", "").isalnum()):
        raise Unprocessable(
            "validation_error",
            "template names are letters, digits, _ and -",
            errors=[{"field": "name", "message": "invalid"}],
        )
    document = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None}
    try:
        tpl = await services(request.app.state).templates.put(who.tenant, name, document, by=who.key_id)
    except TemplateRejected as exc:
        first = exc.reasons[0]
        raise Unprocessable(first["code"], first["detail"], reasons=exc.reasons) from None
    return json_response({**tpl.describe(), "source": "tenant"})


HANDLERS = [list_templates, get_template, put_template]
