"""Ids: time-ordered, and their time can be read back (the housekeeper compares accept times by id)."""

from __future__ import annotations

import os
import sys
import threading
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


def test_a_forked_child_does_not_make_the_ids_its_parent_makes() -> None:
    # The random bits come from a pool read a page at a time: a child (an rq work horse) reads its own.
    new_id("ntf")  # the pool is full
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ",".join(new_id("ntf") for _ in range(50)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = {made[14:] for made in os.read(read, 65536).decode().split(",")}
    parent = {new_id("ntf")[14:] for _ in range(50)}
    assert len(child) == len(parent) == 50 and not child & parent


def test_ids_are_unique_across_many_pool_refills() -> None:
    made = [new_id("ntf") for _ in range(5000)]  # 5000 x 10 bytes: a dozen pages of random bytes
    assert len(set(made)) == 5000 and all(len(m) == 30 and m[4:].isalnum() for m in made)


def test_threads_making_ids_at_once_never_share_random_bits() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        out.extend(new_id("ntf") for _ in range(3000))

    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=make, args=(out,)) for out in made]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(0.005)
    random_parts = [m[14:] for out in made for m in out]
    assert len(random_parts) == len(set(random_parts)) == 24_000
