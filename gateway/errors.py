"""Every error Tidings raises on purpose, in one tree under ``TidingsError``.

TidingsError                      base of them all
 ├── ProblemError                 answered as an RFC 9457 problem document (status and ``code``)
 │    ├── BadRequest              400 malformed_json, bad_request
 │    ├── Unauthorized            401 unauthorized
 │    ├── Forbidden               403 forbidden, bad signature
 │    ├── NotFound                404 not_found, template_not_found
 │    ├── Conflict                409 idempotency_in_progress, not_cancellable, id_collision
 │    ├── PayloadTooLarge         413 body_too_large
 │    ├── Unprocessable           422 validation_error, idempotency_key_reused, batch_too_large...
 │    ├── TooManyRequests         429 rate_limited, too_many_scheduled (with Retry-After)
 │    └── Unavailable             503 redis_unavailable, audit store unreachable
 ├── Rejected                     a notify refused by a rule: 422, both a problem and a notify answer
 ├── TemplateRejected             a tenant template failing the content rules (422 at PUT)
 ├── InvalidRecipient             an address unusable for its channel (becomes invalid_recipient)
 ├── SettingsError                TIDINGS_* variables that do not describe valid settings
 ├── AuditStoreError              the audit store URL is unusable or the store unreachable
 └── CliError                     a ``tidings`` command's one-line failure (exit 2)

``problem_document`` is the one place a problem body is built.
"""

from __future__ import annotations

from typing import Any, ClassVar

from compliance.reasons import ReasonEntry
from gateway.models import NotifyResult, Status

PROBLEM_TYPE = "https://tidings.dev/problems/"


def problem_document(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The RFC 9457 body with our machine-readable ``code`` (and any extension members)."""
    return {
        "type": PROBLEM_TYPE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


class TidingsError(Exception):
    """Base of every error Tidings raises on purpose."""


class ProblemError(TidingsError):
    """Base of the errors that turn into an ``application/problem+json`` answer."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 body."""
        return problem_document(self.status, self.code, self.title, self.detail, **self.extra)


class BadRequest(ProblemError):
    """The request could not be read."""

    status = 400
    title = "Bad request"


class Unauthorized(ProblemError):
    """No API key, or an unknown one."""

    status = 401
    title = "Unauthorized"


class Forbidden(ProblemError):
    """The key lacks the scope, or a webhook signature is wrong."""

    status = 403
    title = "Forbidden"


class NotFound(ProblemError):
    """No such resource for this tenant."""

    status = 404
    title = "Not found"


class Conflict(ProblemError):
    """The resource is in a state that does not allow this."""

    status = 409
    title = "Conflict"


class PayloadTooLarge(ProblemError):
    """The body is over the size limit."""

    status = 413
    title = "Payload too large"


class Unprocessable(ProblemError):
    """The request is well-formed but wrong."""

    status = 422
    title = "Unprocessable request"


class TooManyRequests(ProblemError):
    """The key is over its request rate; retry after the time given."""

    status = 429
    title = "Too many requests"


class Unavailable(ProblemError):
    """A dependency (Redis) is not reachable; retry later."""

    status = 503
    title = "Service unavailable"


class Rejected(TidingsError):
    """A notify request a rule refused: answered 422 with status ``rejected`` and its reasons."""

    def __init__(self, channel: str, reasons: list[ReasonEntry]) -> None:
        super().__init__(reasons[0]["detail"])
        self.channel = channel
        self.reasons = reasons

    def result(self) -> NotifyResult:
        """The notify answer for this rejection."""
        return NotifyResult(id=None, status=Status.REJECTED, channel=self.channel, reasons=self.reasons)

    def problem(self) -> dict[str, Any]:
        """An RFC 9457 problem (``status`` 422, ``type`` .../rejected, ``code`` the first reason's)
        carrying the notify answer's own members beside it (``id`` null, ``channel``, ``reasons``)."""
        first = self.reasons[0]
        body = problem_document(422, first["code"], "Notification rejected", first["detail"])
        body.update(type=PROBLEM_TYPE + "rejected", id=None, channel=self.channel, reasons=self.reasons)
        return body


class TemplateRejected(TidingsError, ValueError):
    """A template whose text fails the content rules; reasons as for a notify."""

    def __init__(self, reasons: list[ReasonEntry]) -> None:
        super().__init__(reasons[0]["detail"])
        self.reasons = reasons


class InvalidRecipient(TidingsError, ValueError):
    """The address cannot be used for the channel."""


class SettingsError(TidingsError, ValueError):
    """The environment does not describe valid settings."""


class AuditStoreError(TidingsError, RuntimeError):
    """The audit store URL is unusable or the store cannot be reached."""


class CliError(TidingsError):
    """A usage or environment problem worth one line (every `tidings` command raises this one)."""
