"""Banned absolute wording, matched in context with one Aho-Corasick pass.

Text and terms are normalized the same way before matching: full-width forms
to ASCII, ASCII to lower case, Traditional characters to Simplified (for every
character the term lists use), and separators (spaces, punctuation, zero-width
characters) dropped, so that 最低價, ＮＯ．１, 最 低 价, 最-低-价 and 最\u200b低价
all match. Hits are reported with positions in the original text. A hit that
lies inside an allowed look-alike (第一次, 唯一标识, ...) is not reported, provided the look-alike is
written as listed (spacing aside): punctuation and invisible characters help a banned term match,
never a look-alike excuse one.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import ahocorasick
import opencc

Severity = Literal["block", "warning"]

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
_CJK_PUNCT = "、。，．・·—–‐‑‒―…‥《》〈〉「」『』【】〔〕〖〗（）！？：；“”‘’～〜﹏＿｜"
# '%' is part of a term (100%), so it is not a separator.
_SEPARATORS = set(string.whitespace) | set(_ZERO_WIDTH) | set(_CJK_PUNCT) | (set(string.punctuation) - {"%"})
_SEPARATORS |= {"\u3000", "\u00a0"}


@dataclass(frozen=True)
class Term:
    """One banned (or warned-about) term."""

    text: str
    category: str
    severity: Severity


@dataclass(frozen=True)
class Hit:
    """A term found in a text, with [start, end) positions in that text."""

    term: str
    start: int
    end: int
    category: str
    severity: Severity

    def as_dict(self) -> dict[str, object]:
        """The shape used in reasons."""
        return {"term": self.term, "start": self.start, "end": self.end, "category": self.category}


def load_terms(extra: Iterable[Term] = ()) -> list[Term]:
    """The shipped term list plus the policy's extra terms."""
    terms = []
    for line in _data("banned_terms.tsv"):
        text, category, severity = line.split("\t")
        if severity not in ("block", "warning"):
            raise ValueError(f"banned_terms.tsv: bad severity {severity!r} for {text!r}")
        terms.append(Term(text, category, severity))  # type: ignore[arg-type]
    return terms + list(extra)


def load_allowed(extra: Iterable[str] = ()) -> list[str]:
    """The shipped look-alikes plus the policy's extra ones."""
    return list(_data("allowed_terms.txt")) + list(extra)


def _data(name: str) -> list[str]:
    text = resources.files("compliance").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class WordingMatcher:
    """Finds banned terms in a text; build once, scan many."""

    def __init__(self, terms: Sequence[Term], allowed: Sequence[str]) -> None:
        # One-to-one character mapping (full-width to ASCII, Traditional to Simplified), applied only
        # when a text holds such characters; then ASCII lower case; then separators removed.
        self.table = _table([t.text for t in terms] + list(allowed))
        self._needs_map = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(self.table)) + "]")
        self._separators = re.compile("[" + "".join(re.escape(ch) for ch in sorted(_SEPARATORS)) + "]+")
        self.automaton = ahocorasick.Automaton()
        self._patterns: list[tuple[bool, str, Term | None]] = []  # (allowed?, normalized, term)
        # An allowed look-alike must be written as it is listed: spacing aside (第 一 次 is a way to
        # set type), no punctuation or invisible character may be slipped into it beyond those its
        # own listing has, or "第一,天天特价" would hide 第一 inside 第一天.
        self._gaps: dict[str, int] = {}
        seen: dict[str, int] = {}
        for term in terms:
            key = self.normalize(term.text)
            if not key:
                raise ValueError(f"term {term.text!r} is empty once normalized")
            if key in seen:  # a later entry (the policy's) overrides the shipped one
                self._patterns[seen[key]] = (False, key, term)
                continue
            seen[key] = len(self._patterns)
            self._patterns.append((False, key, term))
        for word in allowed:
            key = self.normalize(word)
            if key:
                self._gaps[key] = max(_hard_gaps(self._mapped(word)), self._gaps.get(key, 0))
            if key and key not in seen:
                seen[key] = len(self._patterns)
                self._patterns.append((True, key, None))
            elif key:
                # The same string banned and allowed: allowed wins (the operator said so).
                self._patterns[seen[key]] = (True, key, None)
        for index, (_, key, _) in enumerate(self._patterns):
            self.automaton.add_word(key, index)
        self.automaton.make_automaton()

    def _mapped(self, text: str) -> str:
        """Length-preserving: the same characters, folded."""
        if self._needs_map.search(text):
            text = text.translate(self.table)
        lowered = text.lower()
        # str.lower can lengthen a few non-ASCII letters (U+0130); keep positions exact then.
        return (
            lowered if len(lowered) == len(text) else "".join(c.lower() if c.isascii() else c for c in text)
        )

    def normalize(self, text: str) -> str:
        """The form both terms and texts are matched in."""
        return self._separators.sub("", self._mapped(text))

    def scan(self, text: str) -> list[Hit]:
        """Every banned or warned-about term in text, positions in text, longest matches only."""
        mapped = self._mapped(text)
        normalized = self._separators.sub("", mapped)
        found = list(self.automaton.iter(normalized))
        if not found:
            return []
        # Positions in the normalized text back to the original: the indices of the characters kept.
        origin = [i for i, ch in enumerate(mapped) if ch not in _SEPARATORS]
        banned: list[tuple[int, int, Term]] = []
        allowed: list[tuple[int, int]] = []
        for end, index in found:
            is_allowed, key, term = self._patterns[index]
            start = end - len(key) + 1
            if is_allowed:
                written = mapped[origin[start] : origin[end] + 1]  # as it stands in the text
                if _hard_gaps(written) <= self._gaps.get(key, 0):
                    allowed.append((start, end + 1))
            elif term is not None and _bounded(normalized, mapped, origin, start, end + 1, key):
                banned.append((start, end + 1, term))
        kept = [
            (s, e, t)
            for s, e, t in banned
            if not any(a <= s and e <= b for a, b in allowed)
            and not any((s2 <= s and e <= e2) and (e2 - s2) > (e - s) for s2, e2, _ in banned)
        ]
        if not kept:
            return []
        return [
            Hit(t.text, origin[s], origin[e - 1] + 1, t.category, t.severity)
            for s, e, t in sorted(kept, key=lambda k: k[0])
        ]


_HARD_SEPARATORS = frozenset(_SEPARATORS - set(string.whitespace) - {"\u3000", "\u00a0"})


def _hard_gaps(text: str) -> int:
    """Punctuation and invisible characters in a text (spacing does not count)."""
    return sum(ch in _HARD_SEPARATORS for ch in text)


def _bounded(normalized: str, mapped: str, origin: list[int], start: int, end: int, key: str) -> bool:
    """ASCII terms (no1, top1) must not be glued to other letters (casino1, stop1), nor to other digits.

    Letters are judged in the normalized text. Digits are judged by the characters right beside the
    match as written: TOP10 is not TOP1 and No.15 is not NO.1, but "NO.1 2024" still is.
    """
    if not key[0].isascii() or not key[0].isalnum():
        return True
    before = normalized[start - 1] if start > 0 else ""
    after = normalized[end] if end < len(normalized) else ""
    if (before.isascii() and before.isalpha()) or (after.isascii() and after.isalpha()):
        return False
    first, last = origin[start], origin[end - 1]
    if key[0].isdigit() and first > 0 and _ascii_digit(mapped[first - 1]):
        return False
    return not (key[-1].isdigit() and last + 1 < len(mapped) and _ascii_digit(mapped[last + 1]))


def _ascii_digit(ch: str) -> bool:
    return ch.isascii() and ch.isdigit()


_TO_TRADITIONAL = [opencc.OpenCC(c) for c in ("s2t", "s2tw", "s2hk")]


def _table(words: Iterable[str]) -> dict[int, str]:
    """One-to-one folding: full-width ASCII to ASCII, Traditional to Simplified for the words' characters."""
    table: dict[int, str] = {code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)}
    table[0x3000] = " "
    for word in words:
        simplified = unicodedata.normalize("NFKC", word)
        for converter in _TO_TRADITIONAL:
            traditional = converter.convert(simplified)
            if len(traditional) != len(simplified):
                continue
            for t_ch, s_ch in zip(traditional, simplified, strict=True):
                if t_ch != s_ch:
                    table[ord(t_ch)] = s_ch
    return table
