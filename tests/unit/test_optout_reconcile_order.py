"""The order reconcile replays opt-out events in: their stream ids, whichever store they were read from."""

from __future__ import annotations

import msgspec

from gateway.optouts.reconcile import order_of, restored_entry


def test_stream_ids_order_events_numerically() -> None:
    assert order_of("1700000000000-2.0") < order_of("1700000000000-10.0") < order_of("1700000000001-0.0")
    assert order_of("1700000000000-2.0") < order_of("1700000000000-2.1")
    assert order_of("garbage") == 1 and order_of("0-0.0") == 1


def test_restored_entry_keeps_the_opt_outs_own_fields() -> None:
    body = '{"at":"2026-12-01T08:00:00.000+00:00","brand":"星耀商城","source":"sms_reply","type":"opt_out"}'
    assert restored_entry(msgspec.json.decode(body), 0).decode() == (
        '{"address":"","brand":"星耀商城","channel":null,"since":"2026-12-01T08:00:00.000+00:00",'
        '"source":"sms_reply","reason":"","by":"","restored_by":"reconcile"}'
    )
    no_time = restored_entry({"type": "opt_out", "source": "api"}, 1_764_000_000_000)
    assert msgspec.json.decode(no_time)["since"] == "2025-11-24T16:00:00.000+00:00"
