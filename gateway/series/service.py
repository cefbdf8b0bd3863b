"""Starting, reading, changing and ending series (the API's and the CLI's side of them).

A start plans every step at once: its due time (the offset from the anchor, moved into the member's
next best window when asked and that still lands before the anchor), or ``skipped`` when its time
has passed (``past``) or quiet hours would hold it past the anchor (``expired``). Pending steps wait
in one sorted set per tenant; the releaser (``releaser``) turns them into notifications when due.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from compliance.policy import Policy
from compliance.reasons import Reason, reason
from gateway import events, metrics
from gateway.accept.request import resolve_recipient
from gateway.errors import Conflict, NotFound, ProblemError, Rejected, Unprocessable
from gateway.ids import new_id
from gateway.models import NotifyRequest, Recipient
from gateway.recipients import Members, mask_address
from gateway.series.definitions import Definitions, step_templates
from gateway.series.model import SeriesRequest
from gateway.series.planning import AUTO_PARAMS, fingerprint, plan
from gateway.series.view import render_view
from gateway.settings import Settings
from gateway.state import keys, scripts
from gateway.state.record import text_of
from gateway.state.store import Store
from gateway.timeutil import system_clock
from templates.renderer import TemplateNotFound
from templates.series import SeriesDefinition

_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()
MAX_ANCHOR_DAYS = 400
KEEP_AFTER_ANCHOR = 30 * 86_400  # a series is kept this long past its anchor, then expires


class SeriesService:
    """Series for the API, the CLI and the releaser; every change is one script with its audit event."""

    def __init__(
        self, settings: Settings, store: Store, definitions: Definitions, policy: Policy, members: Members
    ) -> None:
        self.settings = settings
        self.store = store
        self.redis = store.redis
        self.definitions = definitions
        self.policy = policy
        self.members = members

    # -- start ----------------------------------------------------------------------------------
    def member_of(self, to: Recipient) -> tuple[str, str, str]:
        """(member key, masked address, zone) of a recipient: by phone, else email, else push token."""
        channel = "sms" if to.phone else "email" if to.email else "push"
        address, tz = resolve_recipient(NotifyRequest(to=to, channel=channel), self.settings.default_region)
        return self.members.of(address), mask_address(address, channel), tz

    async def _prepare(
        self, tenant: str, req: SeriesRequest, now: float
    ) -> tuple[list[str], list[Any], SeriesDefinition, dict[str, str]]:
        definition = await self.definitions.get(tenant, req.definition)
        if definition is None:
            raise Unprocessable(
                "definition_not_found",
                f"no series definition named {req.definition!r}",
                errors=[{"field": "definition", "message": "unknown definition"}],
            )
        rules = self.policy.rules(tenant, req.brand)
        if not rules.brand_registered:
            raise Rejected(
                "", [reason(Reason.UNKNOWN_BRAND, f"the brand {req.brand!r} is not registered in the policy")]
            )
        if (
            not req.brand
            and not rules.signature
            and any(s.channel in ("sms", "mms") for s in definition.steps)
        ):
            raise Rejected(
                "sms",
                [
                    reason(
                        Reason.MISSING_SIGNATURE,
                        "the series sends SMS: give the brand whose signature they carry",
                    )
                ],
            )
        for channel in dict.fromkeys(s.channel for s in definition.steps):
            resolve_recipient(NotifyRequest(to=req.to, channel=channel), self.settings.default_region)
        member, masked, tz = self.member_of(req.to)
        renderer = await self.definitions.templates.renderer(tenant)
        missing: list[str] = []
        for step in definition.steps:
            for name in step_templates(step):
                try:
                    tpl = renderer.get(name)
                except TemplateNotFound:
                    raise Rejected(
                        step.channel, [reason(Reason.TEMPLATE_NOT_FOUND, f"no template named {name!r}")]
                    ) from None
                missing += [
                    p
                    for p, required in tpl.params.items()
                    if required and p not in AUTO_PARAMS and req.params.get(p) in (None, "")
                ]
        if missing:
            names = list(dict.fromkeys(missing))
            raise Rejected(
                "", [reason(Reason.MISSING_PARAM, "missing param(s): " + ", ".join(names), params=names)]
            )
        anchor = req.anchor_at.timestamp()
        if anchor <= now:
            raise Unprocessable(
                "validation_error",
                "anchor_at has passed",
                errors=[{"field": "anchor_at", "message": "in the past"}],
            )
        if anchor > now + MAX_ANCHOR_DAYS * 86_400:
            raise Unprocessable(
                "validation_error",
                f"anchor_at is more than {MAX_ANCHOR_DAYS} days ahead",
                errors=[{"field": "anchor_at", "message": "too far ahead"}],
            )
        planned = plan(definition, anchor, now, tz, self.policy.rules(tenant, req.brand))
        sid = new_id("ser", keys.member_bucket(member))
        fields: dict[str, Any] = {
            "id": sid,
            "def": definition.name,
            "defv": definition.version,
            "member": member,
            "masked": masked,
            "channel": "",
            "brand": req.brand or "",
            "to": _encode.encode(req.to).decode(),
            "zone": tz,
            "anchor": repr(anchor),
            "params": _encode.encode(req.params).decode(),
            "metadata": _encode.encode(req.metadata).decode(),
            "key": req.key or "",
            "fp": fingerprint(req),
            "created_at": repr(now),
            "updated_at": repr(now),
            "n": len(planned),
        }
        due: list[Any] = []
        for i, p in enumerate(planned, 1):
            fields[f"s{i}"] = p.status
            fields[f"d{i}"] = repr(p.due)
            fields[f"r{i}"] = _encode.encode(p.reasons).decode()
            if p.status == "pending":
                due += (repr(p.due), f"{sid}|{i}")
        done = not due
        fields["status"] = "completed" if done else "active"
        if done:
            fields["ended_at"] = repr(now)
        ttl = int(anchor - now) + KEEP_AFTER_ANCHOR
        ev = events.encode(
            events.SeriesChanged(
                at=events.at(now),
                series_id=sid,
                change="started",
                definition=definition.name,
                status=fields["status"],
            )
        )
        flat: list[Any] = []
        for name, value in fields.items():
            flat += (name, value)
        k = [
            keys.series(tenant, sid),
            keys.series_key(tenant, req.key) if req.key else keys.series(tenant, sid),
            keys.member_series(tenant, member),
            keys.series_due(tenant),
            keys.audit(tenant),
        ]
        return k, [sid, ttl, ev, len(fields), *flat, *due], definition, {n: str(v) for n, v in fields.items()}

    async def start_many(
        self, tenant: str, reqs: Sequence[SeriesRequest | ProblemError | Rejected]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Start many series in one round trip; each item is (HTTP status, body) on its own:
        201 started, 200 the same key and body again, 4xx refused."""
        now = system_clock()
        out: list[tuple[int, dict[str, Any]] | None] = [None] * len(reqs)
        calls: list[tuple[list[str], list[Any]]] = []
        slots: list[tuple[int, SeriesRequest, SeriesDefinition, dict[str, str]]] = []
        for i, req in enumerate(reqs):
            if isinstance(req, (ProblemError, Rejected)):
                out[i] = (422 if isinstance(req, Rejected) else req.status, req.problem())
                continue
            try:
                k, a, definition, stored = await self._prepare(tenant, req, now)
            except (ProblemError, Rejected) as exc:
                out[i] = (422 if isinstance(exc, Rejected) else exc.status, exc.problem())
                continue
            calls.append((k, a))
            slots.append((i, req, definition, stored))
        if calls:
            await self.redis.sadd(keys.series_tenants(), tenant)
        results = await self.store.run_many(scripts.SERIES_START, calls) if calls else []
        for (i, req, definition, stored), res in zip(slots, results, strict=True):
            verdict, sid = text_of(res[0]), text_of(res[1])
            view = render_view(stored, definition) if verdict == "new" else await self.view(tenant, sid)
            if view is None:  # expired between the two calls: cannot happen for a new one
                out[i] = (
                    409,
                    Conflict("series_gone", "the series this key started has ended and expired").problem(),
                )
            elif verdict == "dup" and view.pop("_fp") != fingerprint(req):
                out[i] = (
                    422,
                    Unprocessable(
                        "idempotency_key_reused", "this key already started a series with a different body"
                    ).problem(),
                )
            else:
                view.pop("_fp", None)
                if verdict == "new":
                    # Catalogue names only: tenants' own definitions are one label value, not many.
                    shipped = definition.name in self.definitions.catalog
                    metrics.SERIES_STARTED.labels(definition.name if shipped else "tenant").inc()
                    skipped = sum(1 for s in view["steps"] if s["status"] == "skipped")
                    if skipped:
                        metrics.SERIES_STEPS.labels("skipped").inc(skipped)
                    if view["status"] == "completed":
                        metrics.SERIES_ENDED.labels("completed").inc()
                out[i] = (201 if verdict == "new" else 200, view)
        return [o for o in out if o is not None]

    # -- read -----------------------------------------------------------------------------------
    async def view(self, tenant: str, sid: str) -> dict[str, Any] | None:
        """A series as the API shows it (``_fp`` included for the caller to drop)."""
        raw = await self.redis.hgetall(keys.series(tenant, sid))
        if not raw:
            return None
        f = {text_of(k): text_of(v) for k, v in raw.items()}
        return render_view(f, await self.definitions.version(tenant, f.get("defv", "")))

    async def get(self, tenant: str, sid: str) -> dict[str, Any]:
        """The series, or NotFound."""
        view = await self.view(tenant, sid)
        if view is None:
            raise NotFound("not_found", f"no series {sid!r}")
        view.pop("_fp", None)
        return view

    # -- change ---------------------------------------------------------------------------------
    async def patch(self, tenant: str, sid: str, params: dict[str, Any], by: str = "") -> dict[str, Any]:
        """Merge new params over the series' own (null removes one); later steps render with them."""
        key = keys.series(tenant, sid)
        for _ in range(10):
            old = await self.redis.hget(key, "params")
            if old is None:
                raise NotFound("not_found", f"no series {sid!r}")
            merged = {**_decode.decode(old), **params}
            merged = {k: v for k, v in merged.items() if v is not None}
            if len(merged) > 100:
                raise Unprocessable("validation_error", "a series holds at most 100 params")
            ev = events.encode(
                events.SeriesChanged(at=events.at(), series_id=sid, change="params", by=by or None)
            )
            res = text_of(
                (
                    await self.store.run_many(
                        scripts.SERIES_PATCH,
                        [
                            (
                                [key, keys.audit(tenant)],
                                [old, _encode.encode(merged), repr(system_clock()), ev],
                            )
                        ],
                    )
                )[0]
            )
            if res == "ok":
                return await self.get(tenant, sid)
            if res != "changed":
                raise Conflict("series_ended", f"the series is {res}; only an active series takes new params")
        raise Conflict("series_busy", "the series' params kept changing; retry", headers={"Retry-After": "1"})

    async def end(
        self, tenant: str, sid: str, status: str, exit_type: str | None = None, by: str = ""
    ) -> str:
        """End one series (``exited`` or ``cancelled``): pending steps and steps still queued are
        cancelled in one script. Returns 'ended', or the status that prevented it ('unknown')."""
        key = keys.series(tenant, sid)
        raw = await self.redis.hgetall(key)
        if not raw:
            return "unknown"
        f = {text_of(k): text_of(v) for k, v in raw.items()}
        n = int(f.get("n", "0") or 0)
        code = Reason.EXITED if status == "exited" else Reason.SERIES_CANCELLED
        why = reason(
            code,
            "the member's exit event ended the series" if status == "exited" else "the series was cancelled",
        )
        now = system_clock()
        k = [
            key,
            keys.member_series(tenant, f.get("member", "")),
            keys.series_due(tenant),
            keys.leases(tenant),
            keys.audit(tenant),
        ]
        steps: list[Any] = []
        sent = [i for i in range(1, n + 1) if f.get(f"s{i}") == "sent" and f.get(f"x{i}")]
        caps = []
        if sent:
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in sent:
                    pipe.hget(keys.notification(tenant, f[f"x{i}"]), "cap_key")
                caps = await pipe.execute()
        for i, cap in zip(sent, caps, strict=True):
            ntf = keys.notification(tenant, f[f"x{i}"])
            k += (ntf, keys.events(tenant, f[f"x{i}"]), text_of(cap) if cap else ntf)
            steps.append(i)
        at = events.at(now)
        ended_ev = events.encode(
            events.SeriesChanged(
                at=at, series_id=sid, change=status, status=status, exit_type=exit_type, by=by or None
            )
        )
        cancelled_ev = events.encode(events.Cancelled(at=at, by="series", reason=code))
        res = (
            await self.store.run_many(
                scripts.SERIES_END,
                [
                    (
                        k,
                        [
                            status,
                            str(code),
                            _encode.encode([why]).decode(),
                            repr(now),
                            self.settings.record_ttl_seconds,
                            ended_ev,
                            cancelled_ev,
                            *steps,
                        ],
                    )
                ],
            )
        )[0]
        outcome = text_of(res[0])
        if outcome == "ended":
            metrics.SERIES_ENDED.labels(status).inc()
            if len(res) > 1:
                metrics.SERIES_STEPS.labels("cancelled").inc(len(res) - 1)
        return outcome

    async def cancel(self, tenant: str, sid: str, by: str = "") -> dict[str, Any]:
        """``POST /v1/series/{id}/cancel``: the series, now cancelled (409 when it already ended)."""
        outcome = await self.end(tenant, sid, "cancelled", by=by)
        if outcome == "unknown":
            raise NotFound("not_found", f"no series {sid!r}")
        if outcome != "ended":
            raise Conflict("not_cancellable", f"the series is {outcome}")
        return await self.get(tenant, sid)

    async def exit(
        self, tenant: str, kind: str, to: Recipient, brand: str | None, key: str | None, by: str = ""
    ) -> list[str]:
        """An exit event: ends every active series of the member (and brand; or the one with ``key``)
        whose definition exits on ``kind``. Returns the ids it ended."""
        try:
            member, _, _ = self.member_of(to)
        except Rejected as rej:
            raise Unprocessable(
                rej.reasons[0]["code"], rej.reasons[0]["detail"], reasons=rej.reasons
            ) from None
        ids = [text_of(i) for i in await self.redis.smembers(keys.member_series(tenant, member))]
        if key:
            wanted = text_of(await self.redis.get(keys.series_key(tenant, key)))
            ids = [i for i in ids if i == wanted]
        ended = []
        for sid in sorted(ids):
            f = await self.redis.hmget(keys.series(tenant, sid), "defv", "brand", "status")
            if f[0] is None:
                continue
            if brand and text_of(f[1]) != brand:
                continue
            definition = await self.definitions.version(tenant, text_of(f[0]))
            if definition is None or kind not in definition.exit_on:
                continue
            if await self.end(tenant, sid, "exited", exit_type=kind, by=by) == "ended":
                ended.append(sid)
        return ended
