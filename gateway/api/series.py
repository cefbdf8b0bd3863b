"""Controllers of the reminder series: definitions, series, bulk starts and exit events."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, patch, post, put
from litestar.params import FromPath, FromQuery

from gateway.api import views
from gateway.api.auth import Principal
from gateway.api.deps import check_batch, json_response, merge_item, principal, services
from gateway.errors import BadRequest, Forbidden, NotFound, ProblemError, Unprocessable
from gateway.series.importer import SeriesImporter
from gateway.series.model import ExitEvent, SeriesBatch, SeriesPatch, SeriesRequest

MERGED_FIELDS = ("to", "params", "metadata")
DEFINITION = {
    "category": "marketing",
    "description": "积分清零提醒 30/7/1 天",
    "exit_on": ["points_redeemed"],
    "steps": [
        {
            "name": "first_notice",
            "offset": "-P30D",
            "template": "points_expiry_30d",
            "channel": "sms",
            "fallback": [],
            "window": "best",
        },
        {
            "name": "reminder",
            "offset": "-P7D",
            "template": "points_expiry_7d",
            "channel": "sms",
            "fallback": [],
            "window": "best",
        },
        {
            "name": "last_call",
            "offset": "-P1D",
            "template": "points_expiry_1d",
            "channel": "sms",
            "fallback": ["push"],
            "window": "any",
        },
    ],
}
START = {
    "definition": "points_expiry",
    "to": {"phone": "13812345678"},
    "brand": "星耀商城",
    "anchor_at": "2026-12-31T23:59:59+08:00",
    "params": {"name": "李女士", "points": 1200},
    "key": "ledger-7781-2026-12",
    "metadata": {"campaign": "2026-12-expiry"},
}
SERIES: dict[str, Any] = {
    "id": "ser_01JDQ3V8K6W2Z9X4M7N5P0R1ST",
    "definition": "points_expiry",
    "status": "active",
    "to": "+86138****5678",
    "brand": "星耀商城",
    "anchor_at": "2026-12-31T15:59:59.000+00:00",
    "key": "ledger-7781-2026-12",
    "params": {"name": "李女士", "points": 1200},
    "metadata": {"campaign": "2026-12-expiry"},
    "created_at": "2026-12-01T02:00:00.000+00:00",
    "updated_at": "2026-12-01T02:00:00.000+00:00",
    "ended_at": None,
    "end_reason": None,
    "steps": [
        {
            "name": "first_notice",
            "template": "points_expiry_30d",
            "channel": "sms",
            "due_at": "2026-12-02T02:00:00.000+00:00",
            "status": "pending",
            "notification_id": None,
            "reasons": [],
        },
    ],
}
NOT_FOUND = {404: "No series with that id for this tenant (not_found)"}


# -- definitions -----------------------------------------------------------------------------------
@get(
    "/v1/series-definitions",
    summary="The series definitions the tenant can start (the catalogue's and its own)",
    responses={
        **views.ok(dict[str, Any], {"definitions": [{"name": "points_expiry", **DEFINITION}]}),
        **views.problems(*views.KEYED),
    },
)
async def list_series_definitions(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Scope ``notify`` or ``templates``."""
    who = await _reader(request)
    defs = services(request.app.state).series.definitions
    found = await defs.all(who.tenant)
    return json_response({"definitions": [defs.view(d) for _, d in sorted(found.items())]})


async def _reader(request: Request[Any, Any, Any]) -> Principal:
    """A key that starts series (notify) or writes definitions (templates) may read them."""
    try:
        return await principal(request, "notify")
    except Forbidden:
        return await principal(request, "templates")


@get(
    "/v1/series-definitions/{name:str}",
    summary="One series definition",
    responses={
        **views.ok(dict[str, Any], {"name": "points_expiry", **DEFINITION}),
        **views.problems(*views.KEYED, 404, say={404: "No definition of that name (not_found)"}),
    },
)
async def get_series_definition(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """Its document, version and source (catalog or tenant)."""
    who = await _reader(request)
    defs = services(request.app.state).series.definitions
    found = await defs.get(who.tenant, name)
    if found is None:
        raise NotFound("not_found", f"no series definition named {name!r}")
    return json_response(defs.view(found))


@put(
    "/v1/series-definitions/{name:str}",
    status_code=200,
    summary="Create or replace a tenant's series definition",
    responses={
        **views.ok(dict[str, Any], {"name": "points_expiry", **DEFINITION}),
        **views.ok(dict[str, Any], {"name": "points_expiry", **DEFINITION}, "Created", 201),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            say={
                422: "Refused: bad durations, steps out of order, an unknown template, or a step template failing the content rules (reasons)"
            },
        ),
    },
)
async def put_series_definition(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """Validated at upload: every problem is answered at once, each with its field."""
    who = await principal(request, "templates")
    try:
        document = msgspec.json.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise BadRequest("malformed_json", str(exc)) from None
    defs = services(request.app.state).series.definitions
    definition, created = await defs.put(who.tenant, name, document, by=who.key_id)
    return json_response(defs.view(definition), status=201 if created else 200)


# -- series ----------------------------------------------------------------------------------------
def _answer(status: int, body: dict[str, Any]) -> Response[bytes]:
    if status >= 400:
        return Response(msgspec.json.encode(body), status_code=status, media_type="application/problem+json")
    return json_response(body, status=status)


@post(
    "/v1/series",
    status_code=201,
    summary="Start a series for one member",
    responses={
        **views.ok(dict[str, Any], SERIES, "Started", 201),
        **views.ok(dict[str, Any], SERIES, "The same key and body again: the series it started"),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            say={
                422: "Invalid, an unknown definition, brand or recipient, a missing param, or a key reused with another body"
            },
        ),
    },
)
async def start_series(
    request: Request[Any, Any, Any], data: Annotated[SeriesRequest, views.body(START)]
) -> Response[bytes]:
    """201 with every step planned (a step whose time passed is skipped: past); 200 on replay."""
    who = await principal(request, "notify")
    ((status, body),) = await services(request.app.state).series.start_many(who.tenant, [data])
    return _answer(status, body)


def _item(defaults: dict[str, Any], item: Any) -> SeriesRequest | ProblemError:
    if not isinstance(item, dict):
        return Unprocessable("validation_error", "each item must be an object")
    merged = merge_item(defaults, item, MERGED_FIELDS)
    try:
        return msgspec.convert(merged, SeriesRequest, strict=False)
    except msgspec.ValidationError as exc:
        return Unprocessable("validation_error", str(exc))


@post(
    "/v1/series/batch",
    status_code=200,
    summary="Start up to 1,000 series",
    responses={
        **views.ok(
            dict[str, Any],
            {"results": [{"index": 0, "http_status": 201, **SERIES}]},
            "One result per item, in order",
        ),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            say={422: "Invalid: no items, or more than the limit (batch_too_large)"},
        ),
    },
)
async def start_series_batch(
    request: Request[Any, Any, Any],
    data: Annotated[
        SeriesBatch,
        views.body(
            {
                "defaults": {
                    "definition": "points_expiry",
                    "brand": "星耀商城",
                    "anchor_at": "2026-12-31T23:59:59+08:00",
                },
                "items": [
                    {
                        "to": {"phone": "13812345678"},
                        "params": {"name": "李女士", "points": 1200},
                        "key": "ledger-7781",
                    }
                ],
            }
        ),
    ],
) -> Response[bytes]:
    """Each item is merged over ``defaults`` and started or refused on its own."""
    who = await principal(request, "notify")
    svc = services(request.app.state)
    limit = svc.settings.max_batch_items
    check_batch(data.items, limit)
    answers = await svc.series.start_many(who.tenant, [_item(data.defaults, i) for i in data.items])
    results = []
    for index, (status, body) in enumerate(answers):
        if status >= 400:
            results.append(
                {
                    "index": index,
                    "http_status": status,
                    "id": None,
                    "status": "rejected",
                    "code": body.get("code"),
                    "detail": body.get("detail"),
                    "reasons": body.get("reasons")
                    or [{"code": body.get("code"), "detail": body.get("detail")}],
                }
            )
        else:
            results.append({"index": index, "http_status": status, **body})
    return json_response({"results": results})


@post(
    "/v1/series/import",
    status_code=200,
    summary="Start one series per CSV row (phone or email, anchor_at, key, then one column per param)",
    request_max_body_size=1 << 31,
    responses={
        **views.ok(
            dict[str, Any],
            {
                "started": 999,
                "duplicates": 0,
                "invalid": [{"line": 7, "error": "invalid_recipient: ..."}],
                "invalid_count": 1,
                "rows": 1000,
            },
        ),
        **views.problems(*views.KEYED, 413, 422, say={422: "No definition named, or no usable header row"}),
    },
)
async def import_series(
    request: Request[Any, Any, Any], definition: FromQuery[str], brand: FromQuery[str | None] = None
) -> Response[bytes]:
    """Streams the body: a million rows without holding the file in memory."""
    who = await principal(request, "notify")
    svc = services(request.app.state)
    if await svc.series.definitions.get(who.tenant, definition) is None:
        raise Unprocessable("definition_not_found", f"no series definition named {definition!r}")
    importer = SeriesImporter(svc.series, who.tenant, definition, brand)
    report = await importer.run(request.stream())
    return json_response(report.as_dict())


@get(
    "/v1/series/{series_id:str}",
    summary="One series with its steps",
    responses={**views.ok(dict[str, Any], SERIES), **views.problems(*views.KEYED, 404, say=NOT_FOUND)},
)
async def get_series(request: Request[Any, Any, Any], series_id: FromPath[str]) -> Response[bytes]:
    """Each step: due time, status (pending, sent, suppressed, skipped, cancelled), notification, reasons."""
    who = await principal(request, "notify")
    return json_response(await services(request.app.state).series.get(who.tenant, series_id))


@patch(
    "/v1/series/{series_id:str}",
    summary="New params for the steps still to come (null removes one)",
    responses={
        **views.ok(dict[str, Any], SERIES),
        **views.problems(
            *views.KEYED, *views.BODY, 404, 409, say={**NOT_FOUND, 409: "The series has ended (series_ended)"}
        ),
    },
)
async def patch_series(
    request: Request[Any, Any, Any],
    series_id: FromPath[str],
    data: Annotated[SeriesPatch, views.body({"params": {"points": 800}})],
) -> Response[bytes]:
    """Later steps render with the merged params."""
    who = await principal(request, "notify")
    return json_response(
        await services(request.app.state).series.patch(
            who.tenant, series_id, dict(data.params), by=who.key_id
        )
    )


@post(
    "/v1/series/{series_id:str}/cancel",
    status_code=200,
    summary="Cancel a series: steps not yet handed to a provider are cancelled",
    responses={
        **views.ok(dict[str, Any], {**SERIES, "status": "cancelled"}),
        **views.problems(
            *views.KEYED, 404, 409, say={**NOT_FOUND, 409: "The series has already ended (not_cancellable)"}
        ),
    },
)
async def cancel_series(request: Request[Any, Any, Any], series_id: FromPath[str]) -> Response[bytes]:
    """The series, now cancelled."""
    who = await principal(request, "notify")
    return json_response(
        await services(request.app.state).series.cancel(who.tenant, series_id, by=who.key_id)
    )


@post(
    "/v1/events",
    status_code=200,
    summary="Something the member did (points_redeemed): ends the series that exit on it",
    responses={
        **views.ok(dict[str, Any], {"ended": ["ser_01JDQ3V8K6W2Z9X4M7N5P0R1ST"]}),
        **views.problems(*views.KEYED, *views.BODY),
    },
)
async def post_event(
    request: Request[Any, Any, Any],
    data: Annotated[
        ExitEvent,
        views.body({"type": "points_redeemed", "to": {"phone": "13812345678"}, "brand": "星耀商城"}),
    ],
) -> Response[bytes]:
    """Every active series of the member (and brand; or the one with ``key``) exiting on the type ends:
    its steps not yet handed to a provider, queued ones included, end cancelled (exited)."""
    who = await principal(request, "notify")
    ended = await services(request.app.state).series.exit(
        who.tenant, data.type, data.to, data.brand, data.key, by=who.key_id
    )
    return json_response({"ended": ended})


HANDLERS = [
    list_series_definitions,
    get_series_definition,
    put_series_definition,
    start_series,
    start_series_batch,
    import_series,
    get_series,
    patch_series,
    cancel_series,
    post_event,
]
