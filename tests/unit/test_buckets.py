"""Buckets (docs/cluster.md): ids carry their member's bucket, and one bucket keeps today's keys."""

from __future__ import annotations

import collections

import pytest
from redis.crc import key_slot

from gateway.ids import bucket_of, id_time, new_id
from gateway.recipients import Members
from gateway.state import keys


def test_an_id_made_in_a_bucket_reads_it_back_and_keeps_its_time_and_shape() -> None:
    for bucket in (0, 1, 31, 32, 513, 1023):
        made = new_id("ntf", bucket)
        assert len(made) == 30 and bucket_of(made) == bucket and id_time(made) > 0
    assert len({new_id("ntf", 7) for _ in range(10_000)}) == 10_000  # 70 random bits are left


def test_a_bucket_outside_the_space_is_refused_and_a_foreign_id_reads_as_bucket_zero() -> None:
    for bad in (-1, 1024):
        with pytest.raises(ValueError, match="bucket"):
            new_id("ntf", bad)
    assert bucket_of("ntf_short") == 0 and bucket_of("ntf_" + "!" * 26) == 0


def test_members_spread_over_the_buckets_and_their_ids_land_in_them() -> None:
    members = Members("bucket-test-hmac-key")
    counts: collections.Counter[int] = collections.Counter()
    for i in range(20_480):
        member = members.of(f"+86138{i:08d}")
        bucket = keys.member_bucket(member)
        assert bucket == int(member[:3], 16) >> 2
        counts[bucket] += 1
    assert bucket_of(new_id("ser", keys.member_bucket(member))) == keys.member_bucket(member)
    # 20 a bucket on average: every bucket used, none with more than three times its share.
    assert len(counts) == 1024 and max(counts.values()) < 60
    assert keys.member_bucket("") == 0 and keys.member_bucket("not-hex") == 0


def test_one_bucket_is_todays_layout_byte_for_byte() -> None:
    for bucket in (0, 5, 1023):
        assert keys.bucket_prefix("acme", bucket, 1) == "tid:{acme}:"
    assert keys.notification("acme", "ntf_1").startswith(keys.bucket_prefix("acme", 9, 1))


def test_sixty_four_buckets_spread_one_tenant_over_three_masters() -> None:
    prefixes = {keys.bucket_prefix("acme", b, 64) for b in range(1024)}
    assert len(prefixes) == 64 and keys.bucket_prefix("acme", 65, 64) == "tid:{acme:1}:"
    slots = {key_slot(f"{p}ntf:x".encode()) for p in prefixes}
    # A 3-master cluster splits the 16384 slots in three ranges; every master gets some of the tenant.
    masters = {slot * 3 // 16384 for slot in slots}
    assert len(slots) > 60 and masters == {0, 1, 2}


@pytest.mark.parametrize("buckets", [1, 2, 64, 1024])
def test_bucket_counts_that_divide_the_space_are_taken(buckets: int) -> None:
    assert keys.check_buckets(buckets) == buckets


@pytest.mark.parametrize("buckets", [0, 3, 48, 2048, -4])
def test_other_bucket_counts_are_refused(buckets: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        keys.check_buckets(buckets)
