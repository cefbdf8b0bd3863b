"""What a send did, as the state change to write: sent, a retry with backoff, failed, or a dead letter."""

from __future__ import annotations

import logging
import random
from functools import lru_cache

import msgspec
from prometheus_client import Counter, Histogram

from channels import Outcome, SendResult
from compliance.reasons import Reason, ReasonEntry, reason
from compliance.state import state_rules
from gateway import events, metrics
from gateway.models import Status
from gateway.settings import Settings
from gateway.state.store import Claimed
from gateway.state.store import Outcome as Written
from gateway.timeutil import system_clock

log = logging.getLogger("tidings.dispatch")

RATE_LIMITED = "rate_limited"


class Outcomes:
    """Turns provider answers (or their absence) into the outcomes the store writes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # (channel, provider, outcome) -> its send-time histogram and send counter, looked up once
        # (prometheus_client's labels() takes a lock and builds a key on every call).
        self._metrics: dict[tuple[str, str, str], tuple[Histogram, Counter]] = {}

    def held(self, c: Claimed, wait: float) -> Written:
        """Every usable provider was at its rate limit: no attempt spent, go again when there is room."""
        now = system_clock()
        ev = events.encode(
            events.Deferred(
                at=events.at(now), reason=RATE_LIMITED, detail="the providers' rate limits are reached"
            )
        )
        fields = {"status": Status.QUEUED, "not_before": repr(now + wait)}
        return Written(c.id, c.attempt, "defer", ev, fields, now + wait + self.settings.lease_seconds)

    def over_quota(self, c: Claimed, wait: float, then: str) -> Written:
        """Every provider that could carry it is at its own limit for this number (channels/quotas.py):
        held until the first has room (no attempt spent), or failed when its ``over_quota`` says so."""
        metrics.PROVIDER_LIMITED.labels(c.record.channel, then).inc()
        detail = f"the provider's limit for this number is reached; room in {round(wait)} s"
        now = system_clock()
        expires = c.record.expires_at
        if expires is not None and now + wait > expires:  # room would come too late: say so now
            why = reason(Reason.EXPIRED, f"{detail}, after expires_at")
            return self.final(c, Status.SUPPRESSED, Reason.EXPIRED, why, now)
        if then == "fail":
            return self.final(
                c, Status.FAILED, Reason.PROVIDER_LIMIT, reason(Reason.PROVIDER_LIMIT, detail), now
            )
        ev = events.encode(events.Deferred(at=events.at(now), reason=Reason.PROVIDER_LIMIT, detail=detail))
        fields = {"status": Status.QUEUED, "not_before": repr(now + wait)}
        return Written(c.id, c.attempt, "defer", ev, fields, now + wait + self.settings.lease_seconds)

    def outcome(
        self, channel: str, c: Claimed, result: SendResult, elapsed: float
    ) -> tuple[Written, SendResult | None]:
        """Turn a provider's answer into the state change to write."""
        key = (channel, result.provider, result.outcome.value)
        found = self._metrics.get(key)
        if found is None:
            found = self._metrics[key] = (
                metrics.SEND_SECONDS.labels(channel, result.provider),
                metrics.SENDS.labels(*key),
            )
        found[0].observe(elapsed)
        found[1].inc()
        done = system_clock()
        at = events.at(done)
        attempt_ev = events.encode(
            events.Attempt(
                at=at,
                attempt=c.attempt,
                provider=result.provider,
                outcome=result.outcome.value,
                provider_message_id=result.provider_message_id,
                error_code=result.code,
                error_detail=result.detail,
                duration_ms=round(elapsed * 1000, 1),
            )
        )
        if result.outcome is Outcome.SENT:
            sent_ev = events.encode(
                events.Sent(
                    at=at,
                    provider=result.provider,
                    provider_message_id=result.provider_message_id,
                )
            )
            attempt_ev += "\n" + sent_ev
            fields = {
                "status": Status.SENT,
                # An earlier attempt's error is not this notification's any more (its attempt keeps it).
                "error_code": "",
                "provider": result.provider,
                "provider_message_id": result.provider_message_id or "",
                "sent_at": repr(done),
            }
            return Written(c.id, c.attempt, "sent", attempt_ev, fields), result
        if result.outcome is Outcome.REJECTED:
            # WeChat's 43101: the member has no grant (refused, or used up on WeChat's side).
            code = Reason.NO_WECHAT_GRANT if channel == "wechat" and result.code == "43101" else None
            why = reason(
                code or Reason.PROVIDER_REJECTED,
                result.detail or "provider refused the message",
                provider_code=result.code,
            )
            return self.final(
                c, Status.FAILED, code or Reason.PROVIDER_REJECTED, why, done, attempt_ev, result.code
            ), result
        if c.attempt >= self.settings.max_attempts:
            why = reason(
                Reason.RETRIES_EXHAUSTED, f"gave up after {c.attempt} attempts", provider_code=result.code
            )
            written = self.final(
                c, Status.FAILED, Reason.RETRIES_EXHAUSTED, why, done, attempt_ev, result.code
            )
            return Written(c.id, c.attempt, "dead", written.event, written.fields), result
        metrics.RETRIES.labels(channel, result.provider).inc()
        delay = self.backoff(c.attempt, result.retry_after)
        fields = {"status": Status.QUEUED, "not_before": repr(done + delay), "error_code": result.code or ""}
        lease = done + delay + self.settings.lease_seconds
        return Written(c.id, c.attempt, "retry", attempt_ev, fields, lease), result

    def final(
        self,
        c: Claimed,
        status: str,
        code: Reason,
        why: ReasonEntry,
        at: float,
        attempt_ev: str | None = None,
        provider_code: str | None = None,
    ) -> Written:
        kind = events.Failed if status == Status.FAILED else events.Suppressed
        detail = why.get("detail")
        ev = events.encode(
            kind(
                at=events.at(at),
                reason=code,
                detail=None if detail is None else str(detail),
                provider_code=provider_code,
            )
        )
        if status == Status.FAILED:
            log.warning(
                "notification failed: %s (%s)", code, why.get("detail"), extra={"notification_id": c.id}
            )
        # Both events go in: the attempt (if any) first, then the verdict.
        combined = ev if attempt_ev is None else attempt_ev + "\n" + ev
        fields = {"status": status, "error_code": str(code), "reasons": msgspec.json.encode([why]).decode()}
        return Written(c.id, c.attempt, status, combined, fields)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Delay before the next attempt."""
        return backoff_delay(
            attempt, self.settings.retry_base_seconds, self.settings.retry_max_seconds, retry_after
        )


def failure(provider: str, exc: BaseException) -> SendResult:
    """A send that raised instead of answering: retry, never lose it."""
    if isinstance(exc, TimeoutError):
        return SendResult(Outcome.RETRY, provider, code="timeout", detail="send timed out")
    log.error("adapter %s raised %s", provider, type(exc).__name__, exc_info=exc)
    return SendResult(Outcome.RETRY, provider, code="adapter_error", detail=type(exc).__name__)


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter (half fixed, half random), at least what the provider asked for."""
    step = float(min(cap, base * 2.0 ** (attempt - 1)))
    delay = step / 2 + random.uniform(0, step / 2)
    return float(max(delay, retry_after or 0.0))


@lru_cache(maxsize=8)
def opted_out_since_accept(at: str) -> tuple[str, str, str]:
    """What the claim writes for a member who opted out since accept: reasons and the two events."""
    why = state_rules().opt_out.reason(since_accept=True)
    return (
        msgspec.json.encode([why]).decode(),
        events.encode(
            events.Compliance(at=at, stage="dispatch", rule="opt_out", outcome="suppress", reason=why["code"])
        ),
        events.encode(events.Suppressed(at=at, reason=why["code"], detail=why["detail"])),
    )


def series_step_cancelled(at: str) -> tuple[str, str, str, str]:
    """What the claim writes for a step whose series ended since it was queued: reasons and the cancelled
    event, for an exited series, then for a cancelled one."""
    exited = reason(Reason.EXITED, "the series ended on the member's exit event before this step was sent")
    cancelled = reason(Reason.SERIES_CANCELLED, "the series was cancelled before this step was sent")
    return (
        msgspec.json.encode([exited]).decode(),
        events.encode(events.Cancelled(at=at, by="series", reason=Reason.EXITED)),
        msgspec.json.encode([cancelled]).decode(),
        events.encode(events.Cancelled(at=at, by="series", reason=Reason.SERIES_CANCELLED)),
    )


def series_step_event(at: str, series_id: str, ntf_id: str) -> str:
    """The series' audit event for a step the claim cancelled because its series had ended."""
    return events.encode(
        events.SeriesChanged(
            at=at, series_id=series_id, change="step", status="cancelled", notification_id=ntf_id
        )
    )
