"""The request bodies of the series endpoints (msgspec Structs, strict like notify's)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from gateway.models import AwareTime, Recipient, Scalar, ShortStr

Name = Annotated[str, Meta(min_length=1, max_length=64)]


class SeriesRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/series`` (and one item of a batch)."""

    definition: Name
    to: Recipient
    anchor_at: AwareTime
    brand: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    params: Annotated[dict[ShortStr, Scalar], Meta(max_length=100)] = {}
    key: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    metadata: Annotated[dict[ShortStr, Scalar], Meta(max_length=40)] = {}


class SeriesBatch(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /v1/series/batch``; items stay raw so one bad item fails alone."""

    items: list[dict[str, Any]]
    defaults: dict[str, Any] = {}


class SeriesPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``PATCH /v1/series/{id}``: params merged over the series' own (null removes one)."""

    params: Annotated[dict[ShortStr, Scalar], Meta(max_length=100)]


class ExitEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/events``: something the member did that ends the series exiting on it."""

    type: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")]
    to: Recipient
    brand: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    key: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    occurred_at: AwareTime | None = None
