"""WeChat in the delivery step: a grant spent before each send, none left or 43101 ends in no_wechat_grant.

The engine claims a batch, runs the dispatch checks, then spends one grant per WeChat message still to
send (``GrantLedger.spend``). A message without one is not offered to any provider: it fails with
``no_wechat_grant`` and, like any failure, goes on to the request's ``fallback`` channels. A provider's
43101 fails it with the same reason (``Outcomes.outcome``) and empties that member's balance for the
template. A grant spent by a send that then failed transiently stays spent for the retries of the same
notification (the spend is marked on it) and is not given back if it finally fails.
"""

from __future__ import annotations

from channels import Outcome, SendResult
from compliance.reasons import Reason, reason
from gateway import metrics
from gateway.delivery.outcomes import Outcomes
from gateway.models import Status
from gateway.state.grants import GrantLedger
from gateway.state.store import Claimed
from gateway.state.store import Outcome as Written

NO_GRANT_CODE = "43101"  # WeChat: the member refused, or the one-time grant is used up
LEDGER = "grant_ledger"  # the "provider" of a message the ledger stopped


def refused_by_provider(channel: str, result: SendResult) -> bool:
    """A WeChat provider's answer that the member has no grant (43101)."""
    return channel == "wechat" and result.outcome is Outcome.REJECTED and result.code == NO_GRANT_CODE


async def spend_grants(
    ledger: GrantLedger, outcomes: Outcomes, tenant: str, items: list[Claimed], now: float
) -> tuple[list[Claimed], list[tuple[Written, SendResult | None]]]:
    """The messages that hold a grant now, and the outcomes of the ones that have none."""
    wanted = [(c.id, c.record.member, str(c.record.rendered.get("template_id", ""))) for c in items]
    missing, spent = await ledger.spend(tenant, wanted)
    metrics.WECHAT_GRANTS.labels("spent").inc(spent)
    if missing:
        metrics.WECHAT_GRANTS.labels("missing").inc(len(missing))
    stopped: list[tuple[Written, SendResult | None]] = []
    for c in items:
        if c.id not in missing:
            continue
        why = reason(
            Reason.NO_WECHAT_GRANT,
            "the member has no WeChat subscribe grant left for this template",
        )
        # A result beside the outcome, so the failure goes on to the fallback channels like a refusal.
        said = SendResult(Outcome.REJECTED, LEDGER, code=str(Reason.NO_WECHAT_GRANT), detail=why["detail"])
        stopped.append((outcomes.final(c, Status.FAILED, Reason.NO_WECHAT_GRANT, why, now), said))
    return [c for c in items if c.id not in missing], stopped


async def note_refusals(
    ledger: GrantLedger,
    tenant: str,
    sent: list[Claimed],
    results: list[tuple[Written, SendResult | None]],
) -> None:
    """Empty the balance of every (member, template) the provider answered 43101 for."""
    gone = [
        (c.record.member, str(c.record.rendered.get("template_id", "")))
        for c, (_, result) in zip(sent, results, strict=True)
        if result is not None and refused_by_provider("wechat", result)
    ]
    if gone:
        metrics.WECHAT_GRANTS.labels("revoked").inc(len(gone))
    await ledger.gone(tenant, gone)
