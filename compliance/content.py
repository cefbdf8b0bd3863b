"""Content rules: pure functions of the message, no state.

A small pipeline of rule objects (STYLE.md): each looks at the draft, may
change it (add the signature or the unsubscribe footer) and may return a
blocking verdict; the first blocking verdict wins. Warnings are collected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from compliance import sms
from compliance.policy import Rules
from compliance.reasons import Reason, ReasonEntry, reason
from compliance.wechat import check_data
from compliance.wording import WordingMatcher

SIGNATURE = re.compile(r"^\s*【([^【】]{1,30})】")
# Unsubscribe instructions carriers and providers accept (DOMAIN.md), in any case and width.
UNSUBSCRIBE = re.compile(
    r"(拒收请回复\s*[RrＲｒ]|回\s*复?\s*(?:TD|T|N|R|ＴＤ|Ｔ)\s*退订|退订\s*(?:请)?回\s*复?\s*(?:TD|T|N|ＴＤ|Ｔ)|回\s*复?\s*(?:TD|T|R)\s*拒收)",
    re.IGNORECASE,
)
TEXT_FIELDS = ("text", "subject", "title", "body", "html")
# A link a call would read out: a URL, a www. address, or a bare domain of a common TLD (with its path).
_LINK = re.compile(
    r"(?i)(?:https?://|www\.)\S+"
    r"|(?<![a-z0-9.-])[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|cn|net|org|io|me|top|xyz|cc|ly|co)(?![a-z0-9-])(?:/\S*)?",
    re.ASCII,
)


@dataclass(slots=True)
class Draft:
    """A message being checked; rules may rewrite ``fields``."""

    channel: str
    category: str
    brand: str | None
    fields: dict[str, Any]
    rules: Rules
    warnings: list[ReasonEntry] = field(default_factory=list)
    decisions: list[tuple[str, str, str | None]] = field(default_factory=list)  # (rule, outcome, code)
    encoding: str | None = None
    segments: int | None = None


@dataclass(frozen=True)
class Verdict:
    """A blocking decision of one rule."""

    rule: str
    reason: ReasonEntry


class Rule(Protocol):
    """One content rule."""

    name: str

    def check(self, draft: Draft) -> Verdict | None:
        """A blocking verdict, or None (the rule may have rewritten the draft or added a warning)."""
        ...


# Control characters (tab, LF and CR aside) and the bidirectional overrides and isolates: invisible
# in a handset's rendering, they can make a text read otherwise than it was checked (Trojan Source).
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
# Header-like fields: a CR or LF in an email subject or a push title could start a header of its own.
_ONE_LINE = ("subject", "title")


class SafeTextRule:
    """Refuses text with control characters or bidi overrides, and line breaks in one-line fields."""

    name = "content"

    def check(self, draft: Draft) -> Verdict | None:
        """Every text field as rendered (template params come from the caller)."""
        for name in TEXT_FIELDS:
            value = draft.fields.get(name)
            if not isinstance(value, str) or not value:
                continue
            bad = _UNSAFE.search(value)
            if bad is None and name in _ONE_LINE and ("\r" in value or "\n" in value):
                why = f"{name} must be one line (no CR or LF)"
            elif bad is not None:
                why = f"{name} holds the invisible character U+{ord(bad.group(0)):04X} at {bad.start()}"
            else:
                continue
            return Verdict(self.name, reason(Reason.INVALID_CONTENT, why, field=name))
        return None


# What the law says of each category of banned term (banned_terms.tsv), for the reason's detail.
_LAW = {
    "absolute": "absolute wording banned by Advertising Law art. 9(3)",
    "brand_status": "honours or endorsements an advertisement may not claim (Advertising Law art. 9, Trademark Law art. 14)",
    "efficacy": "cure or efficacy claims ordinary goods may not make (Advertising Law arts. 16-17)",
}


def _why_banned(blocked: list[dict[str, Any]]) -> str:
    """The law behind the blocked terms (their categories in the list's order)."""
    categories = dict.fromkeys(str(b.get("category", "absolute")) for b in blocked)
    return "; ".join(_LAW.get(c, f"wording banned ({c})") for c in categories)


class WordingRule:
    """Banned absolute wording blocks; time-pressure words warn."""

    name = "wording"

    def __init__(self, matcher: WordingMatcher) -> None:
        self.matcher = matcher

    def check(self, draft: Draft) -> Verdict | None:
        """Scan every text field as the caller rendered it (positions index into that text)."""
        blocked: list[dict[str, Any]] = []
        texts = [(name, draft.fields.get(name)) for name in TEXT_FIELDS]
        data = draft.fields.get("data")  # a WeChat subscribe message's values are what the member reads
        if isinstance(data, dict):
            texts += [(f"data.{k}.value", v.get("value")) for k, v in data.items() if isinstance(v, dict)]
        for name, value in texts:
            if not value or not isinstance(value, str):
                continue
            hits = self.matcher.scan(value)
            blocks = [h.as_dict() | {"field": name} for h in hits if h.severity == "block"]
            warns = [h.as_dict() | {"field": name} for h in hits if h.severity == "warning"]
            blocked += blocks
            if warns:
                words = "、".join(str(w["term"]) for w in warns)
                draft.warnings.append(
                    reason(
                        Reason.BANNED_WORDING,
                        f"time-pressure wording ({words}) risks platform complaints",
                        severity="warning",
                        terms=warns,
                    )
                )
        if blocked:
            words = "、".join(dict.fromkeys(str(b["term"]) for b in blocked))
            return Verdict(
                self.name,
                reason(
                    Reason.BANNED_WORDING,
                    f"{_why_banned(blocked)}: {words}",
                    terms=blocked,
                ),
            )
        return None


class BrandRule:
    """Only registered brands send: providers send only signatures approved for the account."""

    name = "brand"

    def check(self, draft: Draft) -> Verdict | None:
        """The request's brand, or the 【signature】 an unbranded SMS was signed with."""
        rules = draft.rules
        if draft.brand:
            if rules.brand_registered:
                return None
            return Verdict(
                self.name,
                reason(
                    Reason.UNKNOWN_BRAND,
                    f"brand 「{draft.brand}」 is not registered in the policy, so it has no approved "
                    f'signature: add [brands."{draft.brand}"] to the policy',
                ),
            )
        if rules.any_brand or draft.channel not in ("sms", "mms"):
            return None
        found = SIGNATURE.match(str(draft.fields.get("text") or ""))
        if (
            found is None
            or found.group(1).strip() in rules.signatures
            or rules.signature == found.group(1).strip()
        ):
            return None
        return Verdict(
            self.name,
            reason(
                Reason.UNKNOWN_BRAND,
                f"text is signed 【{found.group(1)}】, which no brand registered in the policy uses",
            ),
        )


class SignatureRule:
    """Every SMS starts with the brand's 【signature】: added when missing, a different one refused."""

    name = "signature"

    def check(self, draft: Draft) -> Verdict | None:
        """SMS and MMS only."""
        if draft.channel not in ("sms", "mms") or not draft.fields.get("text"):
            return None
        text = str(draft.fields["text"])
        expected = draft.rules.signature or draft.brand
        found = SIGNATURE.match(text)
        if found:
            if expected and found.group(1).strip() != expected:
                return Verdict(
                    self.name,
                    reason(
                        Reason.SIGNATURE_MISMATCH,
                        f"text is signed 【{found.group(1)}】 but the brand's signature is 【{expected}】",
                    ),
                )
            return None
        if not expected:
            return Verdict(
                self.name,
                reason(
                    Reason.MISSING_SIGNATURE,
                    "SMS must carry the sender's 【signature】: give brand or sign the text",
                ),
            )
        draft.fields["text"] = f"【{expected}】{text.lstrip()}"
        return None


class FooterRule:
    """Marketing SMS/MMS carry a way to refuse; notifications must not."""

    name = "unsubscribe_footer"

    def check(self, draft: Draft) -> Verdict | None:
        """Append the brand's footer to marketing text that has none; refuse one on any other text."""
        if draft.channel not in ("sms", "mms") or not draft.fields.get("text"):
            return None
        text = str(draft.fields["text"])
        # Every accepted instruction names 退订 or 拒收 (or their full-width-free forms): skip the regex otherwise.
        has = ("退订" in text or "拒收" in text) and UNSUBSCRIBE.search(text) is not None
        if draft.category != "marketing":  # transactional, verification
            if has:
                return Verdict(
                    self.name,
                    reason(
                        Reason.UNSUBSCRIBE_ON_TRANSACTIONAL,
                        f"{draft.category} SMS must not carry an unsubscribe line",
                    ),
                )
            return None
        if not has:
            draft.fields["text"] = (
                text.rstrip() + draft.rules.footer_separator + draft.rules.unsubscribe_footer
            )
        return None


class LengthRule:
    """Encoding and segments; text over the provider maximum is refused."""

    name = "length"

    def check(self, draft: Draft) -> Verdict | None:
        """Counted with the signature and footer in place."""
        if draft.channel not in ("sms", "mms") or not draft.fields.get("text"):
            return None
        text = str(draft.fields["text"])
        if len(text) > draft.rules.max_sms_chars:
            return Verdict(
                self.name,
                reason(
                    Reason.CONTENT_TOO_LONG,
                    f"SMS text is {len(text)} characters; the maximum is {draft.rules.max_sms_chars}",
                ),
            )
        draft.encoding, draft.segments = sms.segments(text)
        return None


class VoiceRule:
    """What a call says: no link (a listener cannot tap one) and no more than ``max_voice_chars``."""

    name = "voice"
    # Asked of calls only (``run`` skips it for other channels: no "voice: pass" on every SMS timeline).
    channels = frozenset({"voice"})

    def check(self, draft: Draft) -> Verdict | None:
        """Voice only; the text as rendered (a ``{{ link() }}`` has become its URL by now)."""
        if draft.channel != "voice" or not draft.fields.get("text"):
            return None
        text = str(draft.fields["text"])
        found = _LINK.search(text)
        if found is not None:
            why = (
                f"a call cannot carry a link: {found.group(0)!r} at {found.start()} (say where to go instead)"
            )
            return Verdict(self.name, reason(Reason.INVALID_CONTENT, why, field="text"))
        if len(text) > draft.rules.max_voice_chars:
            return Verdict(
                self.name,
                reason(
                    Reason.CONTENT_TOO_LONG,
                    f"voice text is {len(text)} characters; the maximum is {draft.rules.max_voice_chars}",
                    field="text",
                ),
            )
        return None


class WechatDataRule:
    """A WeChat subscribe message: a template id, and each data value within its type's limits."""

    name = "wechat"
    channels = frozenset({"wechat"})  # not run, nor recorded as a decision, on other channels

    def check(self, draft: Draft) -> Verdict | None:
        """The verdict names the field (``data.thing1.value``)."""
        if not draft.fields.get("template_id"):
            return Verdict(
                self.name, reason(Reason.VALIDATION_ERROR, "wechat needs a template_id", field="template_id")
            )
        data = draft.fields.get("data")
        if not isinstance(data, dict) or not data:
            return Verdict(self.name, reason(Reason.VALIDATION_ERROR, "wechat needs data", field="data"))
        found = check_data(data)
        return None if found is None else Verdict(self.name, found)


def content_pipeline(matcher: WordingMatcher) -> tuple[Rule, ...]:
    """The content rules, in order: safe characters, a registered brand, wording on the caller's text,
    then the SMS rules the voice rule and the WeChat field limits."""
    return (
        SafeTextRule(),
        BrandRule(),
        WordingRule(matcher),
        SignatureRule(),
        FooterRule(),
        LengthRule(),
        VoiceRule(),
        WechatDataRule(),
    )


def run(pipeline: Sequence[Rule], draft: Draft) -> Verdict | None:
    """Apply the rules in order; the first blocking verdict wins. Every rule's decision is recorded;
    a rule with a ``channels`` attribute is asked only for those channels."""
    decisions = draft.decisions
    for rule in pipeline:
        only = getattr(rule, "channels", None)  # a rule for some channels only says so
        if only is not None and draft.channel not in only:
            continue
        warned = len(draft.warnings)
        verdict = rule.check(draft)
        if verdict is not None:
            decisions.append((rule.name, "reject", verdict.reason["code"]))
            return verdict
        if len(draft.warnings) > warned:
            decisions.append((rule.name, "warn", draft.warnings[warned]["code"]))
        else:
            decisions.append((rule.name, "pass", None))
    return None
