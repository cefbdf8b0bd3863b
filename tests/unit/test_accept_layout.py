"""What the accept script reads by position: the keys every accept writes and the record's first fields."""

from __future__ import annotations

from gateway.accept.answers import StateArgs
from gateway.accept.writes import record_fields
from gateway.models import Status
from gateway.state import keys


def test_accept_keys_are_the_scripts_keys_in_order_and_share_the_tenants_slot() -> None:
    assert keys.accept_keys("acme", "ntf_1", "sms") == (
        "tid:{acme}:ntf:ntf_1",
        "tid:{acme}:ntf:ntf_1:ev",
        "tid:{acme}:lease",
        "tid:{acme}:ready:sms",
        "tid:{acme}:held:sms",
        "tid:{acme}:audit",
    )


def test_the_record_starts_with_the_audit_entry_fields() -> None:
    # The script writes the audit entry from these (id, member, masked address, channel) by position.
    capped = StateArgs("k", ("*|*",), "tid:{acme}:cap:m:2026-12", 4, 86_400)
    for state in (StateArgs(), capped):
        record = record_fields(
            "acme", "ntf_1", "sms", Status.QUEUED, 2.0, 1.0, [], "m1", "+8613812345678", "星耀商城", state
        )
        assert list(record)[:4] == ["id", "member", "masked", "channel"]
        assert [record["id"], record["member"], record["channel"]] == ["ntf_1", "m1", "sms"]
        assert "5678" in record["masked"] and "12345678" not in record["masked"]
    assert record["cap_counted"] == "1" and record["cap_key"] == capped.cap_key
