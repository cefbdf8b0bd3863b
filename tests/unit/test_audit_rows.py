"""Audit rows from stream entries: numbers and addresses inside free text are masked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway import events
from gateway.audit.stream import parse_anchor, rows_of, tenant_of
from gateway.recipients import scrub


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("登记电话 13912340001", "登记电话 139****0001"),
        ("会员 +86 139-1234-0001 同意", "会员 139****0001 同意"),
        ("tel:008613912340001;", "tel:139****0001;"),
        ("0086 139 1234 0001", "139****0001"),
        ("The 'To' number +447911123456 is not valid", "The 'To' number 447****3456 is not valid"),
        ("+44 7911 123456", "447****3456"),
        ("reach lina.w@example.com", "reach l***@example.com"),
    ],
)
def test_numbers_and_emails_in_free_text_are_masked(text: str, masked: str) -> None:
    assert scrub(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T10:00:00.123+08:00",
        "BizId 900619746936498440^0",  # provider ids: longer digit runs
        "a 1391234000 b",  # ten digits: not a mobile number
        "订单 20261125 金额 1000",
        "最低价",
    ],
)
def test_dates_ids_and_ordinary_text_stay_as_they_are(text: str) -> None:
    assert scrub(text) == text


def test_one_stream_entry_becomes_one_row_per_event() -> None:
    accepted = '{"type":"accepted","at":"2026-11-25T02:00:00.500Z","status":"queued","channel":"sms"}'
    compliance = '{"type":"compliance","at":"2026-11-25T02:00:00.500Z","stage":"accept","decisions":[]}'
    fields = {"n": "ntf_1", "m": "abc", "a": "+86139****0001", "c": "sms", "e": accepted + "\n" + compliance}
    rows = list(rows_of(tenant_of("tid:{acme}:audit"), "1764036000500-3", fields))
    assert [r.event_id for r in rows] == ["1764036000500-3.0", "1764036000500-3.1"]
    assert [r.type for r in rows] == ["accepted", "compliance"]
    assert {r.tenant for r in rows} == {"acme"}
    assert rows[0].at_ms == int(datetime(2026, 11, 25, 2, 0, 0, 500_000, tzinfo=UTC).timestamp() * 1000)
    # Canonical form: keys sorted, whatever order the writer used.
    assert (
        rows[0].body
        == '{"at":"2026-11-25T02:00:00.500Z","channel":"sms","status":"queued","type":"accepted"}'
    )


def test_tenant_events_and_anchors() -> None:
    ev = events.encode(events.OptedIn(at=events.at(), brand=None, consent_evidence="门店签字"))
    assert '"brand"' not in ev and '"consent_evidence":"门店签字"' in ev
    assert parse_anchor(b"12 abc") == (12, "abc")
    assert parse_anchor(None) is None
