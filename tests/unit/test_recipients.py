from __future__ import annotations

import hashlib
import hmac

import pytest

from gateway.errors import InvalidRecipient
from gateway.recipients import Members, check_email, check_timezone, mask_email, mask_phone, parse_phone


@pytest.mark.parametrize(
    "raw", ["13812345678", "+86 138-1234-5678", "+8613812345678", "(+86) 138 1234 5678", "0086 138 1234 5678"]
)
def test_chinese_mobile_forms_normalize_to_e164(raw: str) -> None:
    p = parse_phone(raw, "CN")
    assert p.e164 == "+8613812345678"
    assert p.mobile and p.timezone == "Asia/Shanghai" and p.region == "CN"


@pytest.mark.parametrize("raw", ["12345", "138123456789999", "abc", "138-ABCD-5678", "", "+86"])
def test_garbage_is_refused(raw: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_phone(raw, "CN")


def test_landline_is_not_mobile_and_foreign_zone() -> None:
    assert not parse_phone("010-12345678", "CN").mobile
    assert parse_phone("+81 90-1234-5678", "CN").timezone == "Asia/Tokyo"


def test_masking() -> None:
    assert mask_phone("+8613812345678") == "+86138****5678"
    assert mask_email("lina@example.com") == "l***@example.com"


def test_email_and_timezone_checks() -> None:
    assert check_email(" Lina@Example.COM ") == "Lina@example.com"
    with pytest.raises(InvalidRecipient):
        check_email("lina@")
    assert check_timezone("Asia/Shanghai") == "Asia/Shanghai"
    with pytest.raises(InvalidRecipient):
        check_timezone("Asia/Atlantis")
    for hostile in (
        "0" * 256,
        "../../etc/passwd",
        "",
        "Asia/Shanghai\x00",
    ):  # 256 zeros made ZoneInfo raise OSError
        with pytest.raises(InvalidRecipient):
            check_timezone(hostile)


def test_fast_path_agrees_with_phonenumbers() -> None:
    import random

    from channels.addresses import _fast_cn_mobile, _full_parse

    rng = random.Random(7)
    samples = [f"1{rng.randint(0, 9_999_999_999):010d}" for _ in range(3000)]
    samples += [f"+86 {s[:3]}-{s[3:7]}-{s[7:]}" for s in samples[:300]] + [f"0086{s}" for s in samples[:300]]
    checked = 0
    for raw in samples:
        fast = _fast_cn_mobile(raw, "CN")
        if fast is None:
            continue
        full = _full_parse(raw, "CN")
        assert (fast.e164, fast.mobile, fast.region, fast.timezone) == (
            full.e164,
            full.mobile,
            full.region,
            full.timezone,
        ), raw
        checked += 1
    assert checked > 1000


@pytest.mark.parametrize(
    "raw", ["13812345678", "+86 138-1234-5678", "+8613812345678", "(+86) 138 1234 5678", "0086 138 1234 5678"]
)
def test_the_fast_path_takes_every_written_form_of_a_chinese_mobile(raw: str) -> None:
    # The scrubber's separator table once shadowed this one, and "+86" forms all took the slow path.
    from channels.addresses import _fast_cn_mobile

    fast = _fast_cn_mobile(raw, "CN")
    assert fast is not None and fast.e164 == "+8613812345678"


@pytest.mark.parametrize("key", ["", "a-secret-key", "密钥-" * 30])
def test_member_key_is_hmac_sha256_of_the_address(key: str) -> None:
    """Members keeps the key's inner and outer hashes; the digest must stay RFC 2104's, since every
    member key in Redis and the audit log was made with it (keys over the block size too)."""
    members = Members(key)
    for address in ("+8613800000001", "li.na@example.cn", "推送令牌-token"):
        expected = hmac.new(key.encode(), address.encode(), hashlib.sha256).hexdigest()[:32]
        assert members.of(address) == expected
