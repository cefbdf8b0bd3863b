"""Tenant templates: stored in Redis beside the shipped catalogue, which they override by name."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from compliance.content import Draft, FooterRule, WordingRule, run
from compliance.policy import Policy
from compliance.reasons import Reason, ReasonEntry, reason
from gateway import events
from gateway.audit import stream as audit
from gateway.errors import TemplateRejected
from gateway.state import keys
from templates.renderer import CHANNEL_FIELDS, InvalidTemplate, Renderer, Template, parse_template


class TenantTemplates:
    """Per-tenant renderers (catalogue + the tenant's own templates), cached for a few seconds."""

    def __init__(
        self, redis: aioredis.Redis, catalog: dict[str, Template], policy: Policy, cache_seconds: float = 2.0
    ) -> None:
        self.redis = redis
        self.catalog = catalog
        self.policy = policy
        self.cache_seconds = cache_seconds
        self._base = Renderer(catalog)
        self._cache: dict[str, tuple[float, Renderer]] = {}

    async def renderer(self, tenant: str) -> Renderer:
        """The renderer for a tenant (the shared catalogue one when it has no templates of its own)."""
        now = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] > now:
            return hit[1]
        own = await self.custom(tenant)
        renderer = Renderer({**self.catalog, **own}) if own else self._base
        self._cache[tenant] = (now + self.cache_seconds, renderer)
        return renderer

    async def custom(self, tenant: str) -> dict[str, Template]:
        """The tenant's own templates."""
        raw = await self.redis.hgetall(keys.templates(tenant))
        out = {}
        for name, doc in raw.items():
            data = msgspec.json.decode(doc)
            out[name.decode() if isinstance(name, bytes) else str(name)] = parse_template(
                data, source="stored"
            )
        return out

    def check(self, name: str, document: dict[str, Any]) -> Template:
        """Validate a template document and run the content rules over every channel variant."""
        try:
            tpl = parse_template({**document, "name": name}, source=name)
        except InvalidTemplate as exc:
            raise TemplateRejected([reason(Reason.VALIDATION_ERROR, str(exc))]) from None
        shipped = self.catalog.get(name)
        if tpl.category == "verification" or (shipped is not None and shipped.category == "verification"):
            why = "verification templates are the gateway's own (POST /v1/verifications fills in the code)"
            raise TemplateRejected([reason(Reason.VALIDATION_ERROR, why)])
        if not tpl.variants:
            raise TemplateRejected(
                [
                    reason(
                        Reason.VALIDATION_ERROR,
                        f"a template needs at least one of {', '.join(CHANNEL_FIELDS)}",
                    )
                ]
            )
        problems = self.lint(tpl)
        if problems:
            raise TemplateRejected(problems)
        return tpl

    def lint(self, tpl: Template) -> list[ReasonEntry]:
        """The content rules over every channel variant of a template: the reasons it fails them."""
        rules = self.policy.rules(None, None)
        wording = WordingRule(self.policy.matcher)
        sms_rules = (
            wording,
            FooterRule(),
        )  # the footer rule refuses an unsubscribe line on transactional text
        problems: list[ReasonEntry] = []
        for channel, variant in tpl.variants.items():
            for field in CHANNEL_FIELDS.get(channel, ()):
                text = variant.get(field)
                if not text:
                    continue
                draft = Draft(
                    channel=channel,
                    category=tpl.category,
                    brand=None,
                    fields={"text": str(text)},
                    rules=rules,
                )
                verdict = run(sms_rules if field == "text" else (wording,), draft)
                if verdict is not None:
                    for term in verdict.reason.get("terms", []):
                        term["field"] = f"{channel}.{field}"
                    problems.append({**verdict.reason, "field": f"{channel}.{field}"})
        return problems

    async def put(self, tenant: str, name: str, document: dict[str, Any], by: str = "") -> Template:
        """Store a template (after check) with its audit event; the tenant's cache is dropped."""
        tpl = self.check(name, document)
        stored = msgspec.json.encode({**document, "name": name})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.templates(tenant), name, stored)
            ev = events.encode(
                events.TemplateChanged(
                    at=events.at(), name=name, sha256=hashlib.sha256(stored).hexdigest(), by=by or None
                )
            )
            audit.queue(pipe, tenant, ev)
            await pipe.execute()
        self._cache.pop(tenant, None)
        return tpl
