"""Ids: time-ordered, and their time can be read back (the housekeeper compares accept times by id)."""

from __future__ import annotations

import time

from gateway.ids import id_time, new_id


def test_an_id_tells_when_it_was_made_to_the_millisecond() -> None:
    before = time.time()
    made = new_id("ntf")
    after = time.time()
    assert made.startswith("ntf_") and len(made) == 30
    assert before - 0.001 <= id_time(made) <= after


def test_ids_made_later_read_as_later_and_a_foreign_id_reads_as_zero() -> None:
    first = new_id("ntf")
    time.sleep(0.005)
    second = new_id("ntf")
    assert id_time(second) > id_time(first) and second > first
    assert id_time("ntf_not-an-id") == 0.0 and id_time("ntf_" + "!" * 26) == 0.0
