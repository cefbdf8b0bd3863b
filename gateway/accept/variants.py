"""Which variant of an experiment a member gets.

A keyed hash of the experiment and the member's key (itself a keyed hash of the address, never the
plain number): the same member always lands in the same variant, weights are respected, and nobody
without the key can tell from a number which variant it gets.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from compliance.reasons import Reason, reason
from gateway.errors import Rejected
from gateway.models import Experiment, NotifyRequest, Variant


def assign(key: str, experiment: Experiment, member: str) -> Variant:
    """The member's variant (weights respected, the same every time)."""
    digest = hmac.new(key.encode(), f"{experiment.name}\x00{member}".encode(), hashlib.sha256).digest()
    point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in experiment.variants)
    for variant in experiment.variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    return experiment.variants[-1]


def choose_variant(req: NotifyRequest, key: str, member: str) -> tuple[NotifyRequest, Variant | None]:
    """The request as the member's variant sends it (its template), and the variant; as it is without
    an experiment."""
    if req.experiment is None:
        return req, None
    if req.template or req.content:
        raise Rejected(
            req.channel,
            [
                reason(
                    Reason.VALIDATION_ERROR,
                    "an experiment's variants name the template: leave template and content out",
                )
            ],
        )
    variant = assign(key, req.experiment, member)
    return msgspec.structs.replace(req, template=variant.template), variant
