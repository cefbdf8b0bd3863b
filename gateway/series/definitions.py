"""Series definitions: the shipped catalogue and each tenant's own, which override it by name.

A series keeps the version of the definition it began on (a hash of its content), so changing a
definition never changes a series already running; every version a tenant stored stays readable.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from compliance.reasons import Reason, ReasonEntry, reason
from gateway import events
from gateway.accept.tenant_templates import TenantTemplates
from gateway.audit import stream as audit
from gateway.errors import Unprocessable
from gateway.models import Experiment
from gateway.state import keys
from gateway.state.record import text_of
from templates.renderer import Renderer, TemplateNotFound
from templates.series import InvalidDefinition, SeriesDefinition, Step, load_definitions, parse_definition


def step_experiment(step: Step) -> Experiment | None:
    """A step's experiment, validated like a notify's (msgspec.ValidationError otherwise)."""
    return None if step.experiment is None else msgspec.convert(step.experiment, Experiment)


def step_templates(step: Step) -> list[str]:
    """The templates a step may send: its own, or each variant's of its experiment."""
    if step.experiment is None:
        return [step.template]
    return [str(v.get("template", "")) for v in step.experiment.get("variants", []) if isinstance(v, dict)]


def _problem(problems: list[ReasonEntry]) -> Unprocessable:
    first = problems[0]
    return Unprocessable(
        first["code"],
        "the series definition cannot be used: " + "; ".join(p["detail"] for p in problems),
        reasons=problems,
        errors=[{"field": p.get("field", ""), "message": p["detail"]} for p in problems],
    )


class Definitions:
    """Looks definitions up for a tenant (cached a few seconds) and stores the tenant's own."""

    def __init__(
        self,
        redis: aioredis.Redis,
        templates: TenantTemplates,
        catalog: dict[str, SeriesDefinition] | None = None,
        cache_seconds: float = 2.0,
    ) -> None:
        self.redis = redis
        self.templates = templates
        self.catalog = load_definitions() if catalog is None else catalog
        self._versions: dict[str, SeriesDefinition] = {d.version: d for d in self.catalog.values()}
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, SeriesDefinition]]] = {}

    async def all(self, tenant: str) -> dict[str, SeriesDefinition]:
        """Every definition the tenant can start: the catalogue's and its own (its own win)."""
        now = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] > now:
            return hit[1]
        own = {}
        for name, doc in (await self.redis.hgetall(keys.series_definitions(tenant))).items():
            definition = parse_definition(msgspec.json.decode(doc), name=text_of(name))
            own[definition.name] = definition
            self._versions[definition.version] = definition
        merged = {**self.catalog, **own}
        self._cache[tenant] = (now + self.cache_seconds, merged)
        return merged

    async def get(self, tenant: str, name: str) -> SeriesDefinition | None:
        """The definition a new series of that name starts on."""
        return (await self.all(tenant)).get(name)

    async def version(self, tenant: str, version: str) -> SeriesDefinition | None:
        """The definition a running series began on (versions never change)."""
        found = self._versions.get(version)
        if found is not None:
            return found
        doc = await self.redis.hget(keys.series_versions(tenant), version)
        if doc is None:
            return None
        data = msgspec.json.decode(doc)
        found = parse_definition(data, name=str(data.get("name", "")))
        self._versions[version] = found
        return found

    async def check(self, tenant: str, name: str, document: Any) -> SeriesDefinition:
        """Validate a document: its shape, then each step's template (exists, has the channel, agrees
        on the category, passes the content rules). Unprocessable with every reason found."""
        try:
            definition = parse_definition(document, name=name)
        except InvalidDefinition as exc:
            raise _problem(
                [
                    {
                        **reason(Reason.VALIDATION_ERROR, f"{field}: {message}" if field else message),
                        "field": field,
                    }
                    for field, message in exc.problems
                ]
            ) from None
        renderer = await self.templates.renderer(tenant)
        problems: list[ReasonEntry] = []
        for i, step in enumerate(definition.steps):
            where = f"steps[{i}].template"
            if step.experiment is not None:
                where = f"steps[{i}].experiment"
                try:
                    step_experiment(step)
                except msgspec.ValidationError as exc:
                    problems.append({**reason(Reason.VALIDATION_ERROR, f"{where}: {exc}"), "field": where})
                    continue
            for name in step_templates(step):
                problems += self._check_template(
                    renderer, name, step.channel, step.fallback, definition.category, where
                )
        if problems:
            raise _problem(problems)
        return definition

    def _check_template(
        self,
        renderer: Renderer,
        name: str,
        channel: str,
        fallback: tuple[str, ...],
        category: str,
        where: str,
    ) -> list[ReasonEntry]:
        """What is wrong with a step's template: unknown, missing a channel, another category, wording."""
        try:
            tpl = renderer.get(name)
        except TemplateNotFound:
            return [
                {**reason(Reason.TEMPLATE_NOT_FOUND, f"{where}: no template named {name!r}"), "field": where}
            ]
        problems: list[ReasonEntry] = [
            {
                **reason(Reason.TEMPLATE_NOT_FOUND, f"{where}: template {name!r} has no {ch} variant"),
                "field": where,
            }
            for ch in (channel, *fallback)
            if ch not in tpl.variants
        ]
        if tpl.category != category:
            problems.append(
                {
                    **reason(
                        Reason.CATEGORY_MISMATCH,
                        f"{where}: template {name!r} is {tpl.category}, the series {category}",
                    ),
                    "field": where,
                }
            )
        for found in self.templates.lint(tpl):
            problems.append({**found, "field": f"{where} ({found.get('field', '')})"})
        return problems

    async def put(self, tenant: str, name: str, document: Any, by: str = "") -> tuple[SeriesDefinition, bool]:
        """Store a tenant definition after ``check`` (with its audit event); (definition, created)."""
        definition = await self.check(tenant, name, document)
        stored = msgspec.json.encode(definition.describe())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hexists(keys.series_definitions(tenant), name)
            pipe.hset(keys.series_definitions(tenant), name, stored)
            pipe.hset(keys.series_versions(tenant), definition.version, stored)
            ev = events.encode(
                events.TemplateChanged(
                    at=events.at(), name=f"series:{name}", sha256=definition.version, by=by or None
                )
            )
            audit.queue(pipe, tenant, ev)
            existed, *_ = await pipe.execute()
        self._cache.pop(tenant, None)
        self._versions[definition.version] = definition
        return definition, not existed

    def view(self, definition: SeriesDefinition) -> dict[str, Any]:
        """A definition as the API shows it: its document, its version, and where it comes from."""
        shipped = self.catalog.get(definition.name)
        return {
            **definition.describe(),
            "version": definition.version,
            "source": "catalog"
            if shipped is not None and shipped.version == definition.version
            else "tenant",
        }
