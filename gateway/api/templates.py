"""Controllers of ``/v1/templates``: the catalogue and a tenant's own templates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, put
from litestar.params import FromPath

from gateway.api import examples, views
from gateway.api.deps import json_response, principal, services
from gateway.errors import NotFound, TemplateRejected, Unprocessable
from gateway.models import CHANNELS


@get(
    "/v1/templates",
    summary="The catalogue and the tenant's own templates",
    responses={
        **views.ok(views.TemplateList, {"templates": [examples.TEMPLATE]}),
        **views.problems(*views.KEYED),
    },
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


@get(
    "/v1/templates/{name:str}",
    summary="One template",
    responses={
        **views.ok(views.TemplateView, examples.TEMPLATE),
        **views.problems(*views.KEYED, 404, say={404: "No template of that name (template_not_found)"}),
    },
)
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
    """The body of PUT /v1/templates/{name}: what GET answers (one shape both ways), or the catalogue
    file's fields as JSON (per-channel tables, params by name). ``channels`` and ``source`` are derived:
    sent back, ``channels`` must agree with the variants and ``source`` is ignored (a PUT makes a tenant's
    own template)."""

    name: str | None = None
    category: Literal["marketing", "transactional"] = "marketing"
    description: str = ""
    params: dict[str, dict[str, Any]] | list[dict[str, Any]] = {}
    channels: list[str] | None = None
    variants: dict[str, dict[str, Any]] | None = None
    source: str | None = None
    sms: dict[str, Any] | None = None
    mms: dict[str, Any] | None = None
    push: dict[str, Any] | None = None
    email: dict[str, Any] | None = None
    voice: dict[str, Any] | None = None
    wechat: dict[str, Any] | None = None


def _document(name: str, data: TemplateDocument) -> dict[str, Any]:
    """The catalogue-file form of a PUT body, or 422 where its parts disagree."""
    if data.name is not None and data.name != name:
        raise _invalid("name", f"the body names {data.name!r}, the path {name!r}")
    params = data.params
    if isinstance(params, list):
        try:
            params = {str(p["name"]): {k: v for k, v in p.items() if k != "name"} for p in params}
        except (KeyError, TypeError):
            raise _invalid("params", "each param needs a name") from None
    document: dict[str, Any] = {"category": data.category, "description": data.description, "params": params}
    tables: dict[str, dict[str, Any]] = {c: v for c in CHANNELS if (v := getattr(data, c)) is not None}
    if data.variants is not None:
        if tables:
            raise _invalid("variants", "give the variants either in variants or per channel, not both")
        unknown = sorted(set(data.variants) - set(CHANNELS))
        if unknown:
            raise _invalid("variants", f"unknown channel(s): {', '.join(unknown)}")
        tables = dict(data.variants)
    if data.channels is not None and sorted(data.channels) != sorted(tables):
        raise _invalid("channels", "channels must list the channels that have a variant")
    return {**document, **tables}


def _invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable("validation_error", message, errors=[{"field": field, "message": message}])


@put(
    "/v1/templates/{name:str}",
    status_code=200,
    summary="Create or replace a template",
    responses={
        **views.ok(views.TemplateView, examples.TEMPLATE),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            say={
                422: "Refused: a variant fails the content rules, or the parts disagree (reasons as for a notify)"
            },
        ),
    },
)
async def put_template(
    request: Request[Any, Any, Any],
    name: FromPath[str],
    data: Annotated[TemplateDocument, views.body(examples.TEMPLATE)],
) -> Response[bytes]:
    """Refused (422) when any variant fails the content rules, with the same reasons as a notify."""
    who = await principal(request, "templates")
    if not (0 < len(name) <= 128 and name.replace("_", "").replace("-", "").isalnum()):
        raise Unprocessable(
            "validation_error",
            "template names are letters, digits, _ and -",
            errors=[{"field": "name", "message": "invalid"}],
        )
    document = _document(name, data)
    try:
        tpl = await services(request.app.state).templates.put(who.tenant, name, document, by=who.key_id)
    except TemplateRejected as exc:
        first = exc.reasons[0]
        raise Unprocessable(first["code"], first["detail"], reasons=exc.reasons) from None
    return json_response({**tpl.describe(), "source": "tenant"})


HANDLERS = [list_templates, get_template, put_template]
