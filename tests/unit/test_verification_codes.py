"""Codes: uniform digits, keyed hashes compared in constant time, seals only the right key and tenant open."""

from __future__ import annotations

from collections import Counter

import pytest

from compliance.limits import VerificationPolicy, Window, block_of
from compliance.policy import PolicyError, parse_policy
from gateway.verify.codes import Codes, new_code, placeholder, reveal
from tests.conftest import QUIET_OFF_POLICY


def test_codes_are_digits_of_the_length_with_leading_zeros_kept() -> None:
    codes = [new_code(6) for _ in range(5000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    first = Counter(c[0] for c in codes)
    assert set(first) == set("0123456789")  # a leading zero is as likely as any digit
    assert len(set(codes)) > 4900


def test_the_hash_is_keyed_and_bound_to_tenant_and_id() -> None:
    codes = Codes("a-secret-key")
    stored = codes.digest("acme", "ver_1", "123456")
    assert "123456" not in stored
    assert codes.matches(stored, "acme", "ver_1", "123456")
    assert not codes.matches(stored, "acme", "ver_1", "123457")
    assert not codes.matches(stored, "acme", "ver_2", "123456")
    assert not codes.matches(stored, "other", "ver_1", "123456")
    assert not Codes("another-key").matches(stored, "acme", "ver_1", "123456")


def test_a_seal_opens_only_with_its_key_and_tenant_and_unaltered() -> None:
    codes = Codes("a-secret-key")
    sealed = codes.seal("acme", "004217")
    assert "004217" not in sealed and sealed != codes.seal("acme", "004217")  # a fresh nonce each time
    assert codes.unseal("acme", sealed) == "004217"
    assert codes.unseal("other", sealed) is None
    assert Codes("another-key").unseal("acme", sealed) is None
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert codes.unseal("acme", flipped) is None
    assert codes.unseal("acme", "") is None and codes.unseal("acme", "v1.!!") is None


def test_reveal_fills_the_placeholder_in_text_and_params_only() -> None:
    mark = placeholder(6)
    rendered, params = reveal(
        {"text": f"验证码为{mark}，5分钟内有效", "media": []}, {"code": mark, "minutes": 5}, "482913"
    )
    assert rendered == {"text": "验证码为482913，5分钟内有效", "media": []}
    assert params == {"code": "482913", "minutes": 5}


def test_limits_policy_problems_and_blocks() -> None:
    assert VerificationPolicy().problems() == []
    bad = VerificationPolicy(code_length=3, ttl_seconds=10, per_block=[Window(0, 60)], per_tenant=[])
    assert len(bad.problems()) == 4
    assert block_of("+8613812345678", 4) == "+861381234"
    assert block_of("+8613812345678", 4) == block_of("+8613812349999", 4) != block_of("+8613812355678", 4)


def test_a_policy_with_unusable_verification_limits_is_refused_naming_them() -> None:
    with pytest.raises(PolicyError, match="verification: code_length must be 4 to 10"):
        parse_policy(QUIET_OFF_POLICY + "\n[verification]\ncode_length = 3\n")
    with pytest.raises(PolicyError, match="per_number"):
        parse_policy(QUIET_OFF_POLICY + '\n[verification]\nper_number = [{count = 1, seconds = "60"}]\n')
    assert parse_policy(QUIET_OFF_POLICY).verification.per_number[0] == Window(1, 60)
