"""The compliance policy: a TOML file of defaults with per-brand and per-tenant overrides."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from compliance.limits import VerificationPolicy
from compliance.wording import Term, WordingMatcher, load_allowed, load_terms

CATEGORIES = ("marketing", "transactional", "verification")
# Calls are held to stricter hours than texts (DOMAIN.md: no calls at lunch or after 21:00), in every
# category but verification codes (a member waiting for a code is waiting for that call).
VOICE_QUIET = ("12:00-14:00", "21:00-08:00")
VOICE_QUIET_EXEMPT = ("verification",)
# Alibaba's TtsParam must stay under 250 characters; free text goes as {"content": text} (14 more).
MAX_VOICE_CHARS = 200
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class PolicyError(ValueError):
    """The policy file is not valid; the message says where."""


class Overrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Keys any level of the policy may set."""

    monthly_cap: int | None = None
    cap_categories: list[str] | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    quiet_categories: list[str] | None = None
    signature: str | None = None
    unsubscribe_footer: str | None = None
    footer_separator: str | None = None
    max_sms_chars: int | None = None
    replies_global: bool | None = None
    replies_resubscribe: bool | None = None
    best_windows_weekday: list[str] | None = None
    best_windows_weekend: list[str] | None = None
    voice_quiet: list[str] | None = None
    voice_quiet_categories: list[str] | None = None
    max_voice_chars: int | None = None


class TenantPolicy(Overrides, forbid_unknown_fields=True, omit_defaults=True):
    """A tenant's overrides, with its own per-brand overrides."""

    brands: dict[str, Overrides] = {}
    # The tenant may send under brands the policy does not list (its own signatures, approved with
    # its own provider account): an explicit opt-in, never the default.
    any_brand: bool = False


class BannedEntry(msgspec.Struct, forbid_unknown_fields=True):
    """An extra banned term from the policy."""

    term: str
    category: str = "absolute"
    severity: str = "block"


class WordingPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """Extra terms and look-alikes."""

    banned: list[BannedEntry] = []
    allowed: list[str] = []


class PolicyFile(msgspec.Struct, forbid_unknown_fields=True):
    """The whole file."""

    defaults: Overrides
    brands: dict[str, Overrides] = {}
    tenants: dict[str, TenantPolicy] = {}
    wording: WordingPolicy = msgspec.field(default_factory=WordingPolicy)
    verification: VerificationPolicy = msgspec.field(default_factory=VerificationPolicy)


@dataclass(frozen=True)
class Rules:
    """The resolved policy for one tenant and brand."""

    monthly_cap: int
    cap_categories: frozenset[str]
    quiet_start: int  # minutes after local midnight
    quiet_end: int
    quiet_categories: frozenset[str]
    signature: str | None
    unsubscribe_footer: str
    footer_separator: str
    max_sms_chars: int
    replies_global: bool
    replies_resubscribe: bool
    # The brand has an entry in the policy (or the tenant may use any brand; no brand counts too).
    brand_registered: bool
    # The signatures the tenant may sign with (each registered brand's, or its name), and whether any goes.
    signatures: frozenset[str]
    any_brand: bool
    # Best send windows (scheduling help for series steps, not enforcement): (start, end) minutes after
    # local midnight, Monday to Friday and Saturday/Sunday.
    best_weekday: tuple[tuple[int, int], ...] = ((600, 660), (900, 960))
    best_weekend: tuple[tuple[int, int], ...] = ((1140, 1260),)
    # Voice calls: local (start, end) windows they are held out of (an end before its start runs past
    # midnight), the categories those hold, and the longest text a call may say.
    voice_quiet: tuple[tuple[int, int], ...] = ((720, 840), (1260, 480))
    voice_quiet_categories: frozenset[str] = frozenset(c for c in CATEGORIES if c not in VOICE_QUIET_EXEMPT)
    max_voice_chars: int = MAX_VOICE_CHARS


class Policy:
    """Resolves rules per (tenant, brand) and owns the wording matcher."""

    def __init__(self, spec: PolicyFile, source: str = "policy") -> None:
        self.spec = spec
        self.source = source
        self._cache: dict[tuple[str | None, str | None], Rules] = {}
        for where, o in self._levels():
            _validate(o, f"{source}: {where}")
        for entry in spec.wording.banned:
            if entry.severity not in ("block", "warning"):
                raise PolicyError(
                    f"{source}: wording.banned {entry.term!r}: severity must be block or warning"
                )
        try:
            self.matcher = WordingMatcher(
                load_terms(Term(e.term, e.category, e.severity) for e in spec.wording.banned),  # type: ignore[arg-type]
                load_allowed(spec.wording.allowed),
            )
        except ValueError as exc:
            raise PolicyError(f"{source}: wording: {exc}") from None
        for problem in spec.verification.problems():
            raise PolicyError(f"{source}: verification: {problem}")
        self.verification = spec.verification
        self.rules(None, None)  # the defaults must resolve completely

    def _levels(self) -> list[tuple[str, Overrides]]:
        levels: list[tuple[str, Overrides]] = [("defaults", self.spec.defaults)]
        levels += [(f'brands."{b}"', o) for b, o in self.spec.brands.items()]
        for t, tp in self.spec.tenants.items():
            levels.append((f"tenants.{t}", tp))
            levels += [(f'tenants.{t}.brands."{b}"', o) for b, o in tp.brands.items()]
        return levels

    def rules(self, tenant: str | None, brand: str | None) -> Rules:
        """Defaults <- brand <- tenant <- tenant's brand."""
        key = (tenant, brand)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        merged = self._merged(tenant, brand)
        missing = [
            k
            for k in ("monthly_cap", "quiet_start", "quiet_end", "unsubscribe_footer", "max_sms_chars")
            if k not in merged
        ]
        if missing:
            raise PolicyError(f"{self.source}: [defaults] must set {', '.join(missing)}")
        tp = self.spec.tenants.get(tenant or "")
        any_brand = tp is not None and tp.any_brand
        registered = self.brands(tenant)
        rules = Rules(
            monthly_cap=int(merged["monthly_cap"]),
            cap_categories=frozenset(merged.get("cap_categories", ["marketing"])),
            quiet_start=_minutes(merged["quiet_start"]),
            quiet_end=_minutes(merged["quiet_end"]),
            quiet_categories=frozenset(merged.get("quiet_categories", ["marketing"])),
            signature=merged.get("signature"),
            unsubscribe_footer=str(merged["unsubscribe_footer"]),
            footer_separator=str(merged.get("footer_separator", " ")),
            max_sms_chars=int(merged["max_sms_chars"]),
            replies_global=bool(merged.get("replies_global", False)),
            replies_resubscribe=bool(merged.get("replies_resubscribe", False)),
            brand_registered=not brand or any_brand or brand in registered,
            signatures=frozenset(self._merged(tenant, b).get("signature") or b for b in registered),
            any_brand=any_brand,
            best_weekday=_windows(merged.get("best_windows_weekday", ["10:00-11:00", "15:00-16:00"])),
            best_weekend=_windows(merged.get("best_windows_weekend", ["19:00-21:00"])),
            voice_quiet=_windows(merged.get("voice_quiet", list(VOICE_QUIET))),
            voice_quiet_categories=frozenset(
                merged.get("voice_quiet_categories", [c for c in CATEGORIES if c not in VOICE_QUIET_EXEMPT])
            ),
            max_voice_chars=int(merged.get("max_voice_chars", MAX_VOICE_CHARS)),
        )
        self._cache[key] = rules
        return rules

    def brands(self, tenant: str | None) -> list[str]:
        """The brands registered for a tenant: the policy's own and the tenant's."""
        tp = self.spec.tenants.get(tenant or "")
        return list(dict.fromkeys([*self.spec.brands, *(tp.brands if tp is not None else ())]))

    def _merged(self, tenant: str | None, brand: str | None) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        layers: list[Overrides | None] = [self.spec.defaults, self.spec.brands.get(brand or "")]
        tp = self.spec.tenants.get(tenant or "")
        if tp is not None:
            layers += [tp, tp.brands.get(brand or "")]
        for layer in layers:
            if layer is not None:
                merged.update(
                    {
                        k: v
                        for k, v in msgspec.structs.asdict(layer).items()
                        if v is not None and k not in ("brands", "any_brand")
                    }
                )
        return merged


def _validate(o: Overrides, where: str) -> None:
    if o.monthly_cap is not None and not 0 <= o.monthly_cap <= 1000:
        raise PolicyError(f"{where}: monthly_cap must be 0 to 1000")
    for name in ("cap_categories", "quiet_categories", "voice_quiet_categories"):
        value = getattr(o, name)
        if value is not None and not set(value) <= set(CATEGORIES):
            raise PolicyError(f"{where}: {name} must be among {', '.join(CATEGORIES)}")
        if value is not None and "verification" in value:  # a code is asked for now, and only then
            raise PolicyError(f"{where}: {name} cannot hold verification: codes are neither capped nor held")
    for name in ("quiet_start", "quiet_end"):
        value = getattr(o, name)
        if value is not None and not _HHMM.match(value):
            raise PolicyError(f'{where}: {name} must be "HH:MM", got {value!r}')
    if o.unsubscribe_footer is not None and not o.unsubscribe_footer.strip():
        raise PolicyError(f"{where}: unsubscribe_footer must not be empty")
    if o.signature is not None and (not o.signature.strip() or "【" in o.signature or "】" in o.signature):
        raise PolicyError(f"{where}: signature is the brand name without 【】")
    if o.footer_separator is not None and (len(o.footer_separator) > 2 or o.footer_separator.strip(" ，,。")):
        raise PolicyError(f"{where}: footer_separator is at most two of: space ， , 。")
    if o.max_sms_chars is not None and not 70 <= o.max_sms_chars <= 1000:
        raise PolicyError(f"{where}: max_sms_chars must be 70 to 1000")
    if o.max_voice_chars is not None and not 10 <= o.max_voice_chars <= 230:
        raise PolicyError(f"{where}: max_voice_chars must be 10 to 230 (Alibaba's TtsParam stays under 250)")
    for window in o.voice_quiet or ():
        start, _, end = window.partition("-")
        if not (_HHMM.match(start) and _HHMM.match(end) and start != end):
            raise PolicyError(
                f'{where}: voice_quiet entries are "HH:MM-HH:MM" (may run past midnight), got {window!r}'
            )
    for name in ("best_windows_weekday", "best_windows_weekend"):
        for window in getattr(o, name) or ():
            start, _, end = window.partition("-")
            if not (_HHMM.match(start) and _HHMM.match(end) and _minutes(start) < _minutes(end)):
                raise PolicyError(f'{where}: {name} entries are "HH:MM-HH:MM" within a day, got {window!r}')


def _windows(spans: list[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for span in spans:
        start, _, end = span.partition("-")
        out.append((_minutes(start), _minutes(end)))
    return tuple(sorted(out))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse and validate a policy document."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = msgspec.convert(raw, PolicyFile)
    except msgspec.ValidationError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    return Policy(spec, source)


@lru_cache(maxsize=8)
def load_policy(path: str | None = None) -> Policy:
    """The policy at path, or the shipped default."""
    if path is None:
        text = resources.files("compliance").joinpath("data", "policy.toml").read_text(encoding="utf-8")
        return parse_policy(text, "compliance/data/policy.toml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror}") from None
    return parse_policy(text, path)
