"""Reminder series definitions: data files beside the templates, and per-tenant documents.

A definition is a list of steps, each an ISO 8601 duration before the anchor (the moment the points
clear), a template, a channel with its fallbacks and a send window. Parsing collects every problem
of a document, so an upload is refused once with all of them.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERIES_DIR = Path(__file__).with_name("series")
CHANNELS = ("sms", "mms", "push", "email", "voice")
WINDOWS = ("best", "any")
MAX_STEPS = 10
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
# Days, hours, minutes and seconds only: a month or a year has no fixed length, and a reminder
# "a month before" is written -P30D. Weeks are allowed alone or with days (ISO 8601-2).
_DURATION = re.compile(
    r"^(?P<sign>[-+]?)P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_TOP_FIELDS = {"name", "category", "description", "exit_on", "steps"}
_STEP_FIELDS = {"name", "offset", "template", "channel", "fallback", "window", "experiment"}


class InvalidDefinition(ValueError):
    """A series definition that cannot be used; ``problems`` lists every reason, each with its field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def parse_duration(text: str) -> float:
    """Seconds of an ISO 8601 duration such as ``-P30D`` or ``-PT10S`` (ValueError when it is not one)."""
    m = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if m is None or not any(m.group(g) for g in ("w", "d", "h", "m", "s")) or text.strip().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration of days, hours, minutes or seconds")
    seconds = (
        int(m.group("w") or 0) * 604_800
        + int(m.group("d") or 0) * 86_400
        + int(m.group("h") or 0) * 3_600
        + int(m.group("m") or 0) * 60
        + float(m.group("s") or 0)
    )
    return -seconds if m.group("sign") == "-" else seconds


@dataclass(frozen=True)
class Step:
    """One step: when (seconds relative to the anchor), what (template) and how (channel, window)."""

    name: str
    offset: float
    offset_text: str
    template: str  # '' when an experiment's variants name the templates
    channel: str
    fallback: tuple[str, ...]
    window: str
    experiment: dict[str, Any] | None = (
        None  # {"name", "variants": [{"name", "template", "weight"}], "metric"}
    )

    def describe(self) -> dict[str, Any]:
        """The step as a definition document writes it."""
        return {
            "name": self.name,
            "offset": self.offset_text,
            **({"template": self.template} if self.template else {}),
            **({"experiment": self.experiment} if self.experiment else {}),
            "channel": self.channel,
            "fallback": list(self.fallback),
            "window": self.window,
        }


@dataclass(frozen=True)
class SeriesDefinition:
    """A validated definition; ``version`` names this exact content (series keep the one they began on)."""

    name: str
    category: str
    description: str
    exit_on: tuple[str, ...]
    steps: tuple[Step, ...]

    def describe(self) -> dict[str, Any]:
        """The definition as the API shows it and a PUT takes it."""
        return {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "exit_on": list(self.exit_on),
            "steps": [s.describe() for s in self.steps],
        }

    @functools.cached_property
    def version(self) -> str:
        """A short hash of the content: the same document always gives the same version."""
        canonical = json.dumps(self.describe(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _strings(value: Any, field: str, problems: list[tuple[str, str]]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append((field, "must be a list of strings"))
        return []
    return list(value)


def _step(raw: Any, i: int, problems: list[tuple[str, str]]) -> Step | None:
    where = f"steps[{i}]"
    if not isinstance(raw, Mapping):
        problems.append((where, "must be an object"))
        return None
    before = len(problems)
    for extra in sorted(set(raw) - _STEP_FIELDS):
        problems.append((f"{where}.{extra}", "unknown field"))
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(
            (f"{where}.name", "must be 1-64 of a-z, 0-9, _ and -, starting with a letter or digit")
        )
    offset_text = raw.get("offset")
    offset = 0.0
    try:
        offset = parse_duration(str(offset_text) if isinstance(offset_text, str) else "")
    except ValueError as exc:
        problems.append((f"{where}.offset", str(exc)))
    else:
        if offset >= 0:
            problems.append((f"{where}.offset", "must be before the anchor (a negative duration, e.g. -P7D)"))
    template = raw.get("template")
    experiment = raw.get("experiment")
    if experiment is not None:
        variants = experiment.get("variants") if isinstance(experiment, Mapping) else None
        if (
            not isinstance(variants, list)
            or len(variants) < 2
            or not all(isinstance(v, Mapping) for v in variants)
        ):
            problems.append((f"{where}.experiment", "an experiment needs at least two variants"))
        if template is not None:
            problems.append((f"{where}.template", "give a template or an experiment, not both"))
        template = ""
    elif not isinstance(template, str) or not 1 <= len(template) <= 128:
        problems.append((f"{where}.template", "must name a template (or give an experiment)"))
    channel = raw.get("channel", "sms")
    if channel not in CHANNELS:
        problems.append((f"{where}.channel", f"must be one of {', '.join(CHANNELS)}"))
    fallback = _strings(raw.get("fallback", []), f"{where}.fallback", problems)
    for fb in fallback:
        if fb not in CHANNELS or fb == channel:
            problems.append((f"{where}.fallback", f"{fb!r} is not a usable fallback channel"))
    if len(fallback) > 3:
        problems.append((f"{where}.fallback", "at most 3 fallback channels"))
    window = raw.get("window", "any")
    if window not in WINDOWS:
        problems.append((f"{where}.window", "must be best or any"))
    if len(problems) > before:
        return None
    return Step(
        str(name),
        offset,
        str(offset_text).strip(),
        str(template),
        str(channel),
        tuple(fallback),
        str(window),
        dict(experiment) if isinstance(experiment, Mapping) else None,
    )


def parse_definition(data: Any, *, name: str) -> SeriesDefinition:
    """Validate one definition document (InvalidDefinition with every problem found)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(data, Mapping):
        raise InvalidDefinition([("", "a definition is an object")])
    if not _NAME.match(name):
        problems.append(("name", "must be 1-64 of a-z, 0-9, _ and -, starting with a letter or digit"))
    if "name" in data and data["name"] != name:
        problems.append(("name", f"the document says {data['name']!r}, the path {name!r}"))
    for extra in sorted(set(data) - _TOP_FIELDS):
        problems.append((extra, "unknown field"))
    category = data.get("category", "marketing")
    if category not in ("marketing", "transactional"):
        problems.append(("category", "must be marketing or transactional"))
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        problems.append(("description", "must be a string of at most 500 characters"))
    exit_on = _strings(data.get("exit_on", []), "exit_on", problems)
    for kind in exit_on:
        if not _EVENT.match(kind):
            problems.append(("exit_on", f"{kind!r} is not an event type (a-z, 0-9, _ and ., up to 64)"))
    raw_steps = data.get("steps")
    steps: list[Step] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(("steps", "a definition needs at least one step"))
    elif len(raw_steps) > MAX_STEPS:
        problems.append(("steps", f"at most {MAX_STEPS} steps"))
    else:
        for i, raw in enumerate(raw_steps):
            step = _step(raw, i, problems)
            if step is not None:
                steps.append(step)
        names = [s.name for s in steps]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(("steps", f"step name {dup!r} is used twice"))
        for a, b in itertools.pairwise(steps):
            if b.offset <= a.offset:
                problems.append(
                    (
                        "steps",
                        f"steps out of order: {b.name} ({b.offset_text}) is not after {a.name} ({a.offset_text})",
                    )
                )
    if problems:
        raise InvalidDefinition(problems)
    return SeriesDefinition(name, str(category), str(description), tuple(exit_on), tuple(steps))


def load_definitions(directory: Path = SERIES_DIR) -> dict[str, SeriesDefinition]:
    """The shipped definitions, one TOML file each (ValueError naming the file when one is invalid)."""
    out: dict[str, SeriesDefinition] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.toml")):
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        try:
            out[path.stem] = parse_definition(data, name=path.stem)
        except InvalidDefinition as exc:
            raise ValueError(f"{path.name}: {exc}") from None
    return out
