"""Buckets (docs/cluster.md): ids carry their member's bucket, and one bucket keeps today's keys."""

from __future__ import annotations

import collections

import pytest
from redis.crc import key_slot

from gateway.ids import bucket_of, id_time, new_id
from gateway.recipients import Members
from gateway.state import keys

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def low_bits(made: str) -> int:
    """The id's last 10 bits, decoded from the whole 26-character body on its own."""
    value = 0
    for ch in made.rpartition("_")[2]:
        value = value * 32 + CROCKFORD.index(ch)
    return value & 1023


def test_an_id_made_in_a_bucket_reads_it_back_and_keeps_its_time_and_shape() -> None:
    for bucket in (0, 1, 31, 32, 513, 1023):
        made = new_id("ntf", bucket)
        assert len(made) == 30 and bucket_of(made) == low_bits(made) == bucket and id_time(made) > 0
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
        counts[keys.member_bucket(member)] += 1
    assert bucket_of(new_id("ser", keys.member_bucket(member))) == keys.member_bucket(member)
    # 20 a bucket on average: every bucket used, none with more than three times its share.
    assert len(counts) == 1024 and max(counts.values()) < 60
    # The first 10 bits of the hex key: 0xffc... is 1111111111 00..., 0x005... is 0000000001 01...
    assert keys.member_bucket("ffc" + "0" * 29) == 1023 and keys.member_bucket("005" + "f" * 29) == 1
    assert keys.member_bucket("003") == 0 and keys.member_bucket("7ff") == 511
    for odd in ("", "ab", "not-hex", "-ab", "+ab", " ab", "a_b", "ABC", "١٢٣"):
        assert keys.member_bucket(odd) == 0, odd


def test_one_bucket_is_todays_layout_byte_for_byte() -> None:
    for bucket in (0, 5, 1023):
        assert keys.bucket_prefix("acme", bucket, 1) == "tid:{acme}:"
    assert keys.notification("acme", "ntf_1").startswith(keys.bucket_prefix("acme", 9, 1))


def test_sixty_four_buckets_spread_one_tenant_over_three_masters() -> None:
    prefixes = {keys.bucket_prefix("acme", b, 64) for b in range(1024)}
    assert len(prefixes) == 64 and keys.bucket_prefix("acme", 65, 64) == "tid:{acme:1}:"
    slots = {key_slot(f"{p}ntf:x".encode()) for p in prefixes}
    # `redis-cli --cluster create` with 3 masters: slots 0-5460, 5461-10922, 10923-16383.
    masters = {0 if slot <= 5460 else 1 if slot <= 10922 else 2 for slot in slots}
    assert len(slots) > 60 and masters == {0, 1, 2}


@pytest.mark.parametrize("buckets", [1, 2, 64, 1024])
def test_bucket_counts_that_divide_the_space_are_taken(buckets: int) -> None:
    assert keys.check_buckets(buckets) == buckets


@pytest.mark.parametrize("buckets", [0, 3, 48, 2048, -4])
def test_other_bucket_counts_are_refused(buckets: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        keys.check_buckets(buckets)
