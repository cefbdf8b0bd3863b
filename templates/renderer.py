"""Template catalogue loading and sandboxed rendering that fails on a missing param."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

CATALOG_DIR = Path(__file__).with_name("catalog")
CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    "sms": ("text",),
    "mms": ("text",),
    "push": ("title", "body"),
    "email": ("subject", "text", "html"),
}


class TemplateError(ValueError):
    """Base of rendering errors."""


class TemplateNotFound(TemplateError):
    """No template of that name, or no variant for the channel."""


class MissingParam(TemplateError):
    """A param the template needs was not given."""

    def __init__(self, names: list[str]) -> None:
        super().__init__("missing param(s): " + ", ".join(names))
        self.names = names


class InvalidTemplate(TemplateError):
    """A catalogue file is malformed."""


@dataclass(frozen=True)
class Template:
    """One catalogue entry with its per-channel variants."""

    name: str
    category: str
    description: str
    params: dict[str, bool]  # name -> required
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view for the API."""
        return {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "params": [{"name": n, "required": r} for n, r in self.params.items()],
            "channels": sorted(self.variants),
            "variants": self.variants,
        }


_text_env = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_html_env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True)


def parse_template(data: Mapping[str, Any], *, source: str) -> Template:
    """Validate one template document."""
    try:
        name = str(data["name"])
        category = str(data.get("category", "marketing"))
        if category not in ("marketing", "transactional"):
            raise InvalidTemplate(f"{source}: category must be marketing or transactional")
        params = {str(k): bool(v.get("required", True)) for k, v in dict(data.get("params", {})).items()}
        variants: dict[str, dict[str, Any]] = {}
        for channel, fields in CHANNEL_FIELDS.items():
            if channel not in data:
                continue
            variant = dict(data[channel])
            unknown = set(variant) - set(fields) - {"media"}
            if unknown:
                raise InvalidTemplate(f"{source}: unknown field(s) {sorted(unknown)} in [{channel}]")
            for f in fields:
                if f in variant:
                    env = _html_env if f == "html" else _text_env
                    env.from_string(str(variant[f]))  # compile now: a syntax error fails at load
            variants[channel] = variant
    except (KeyError, TypeError, AttributeError, jinja2.TemplateSyntaxError) as exc:
        raise InvalidTemplate(f"{source}: {exc}") from None
    return Template(name, category, str(data.get("description", "")), params, variants)


def load_catalog(directory: Path = CATALOG_DIR) -> dict[str, Template]:
    """Every ``*.toml`` of the catalogue directory, by name."""
    catalog: dict[str, Template] = {}
    for path in sorted(directory.glob("*.toml")):
        with path.open("rb") as fh:
            tpl = parse_template(tomllib.load(fh), source=path.name)
        if tpl.name in catalog:
            raise InvalidTemplate(f"{path.name}: duplicate template name {tpl.name!r}")
        catalog[tpl.name] = tpl
    return catalog


class Renderer:
    """Renders catalogue templates for a channel; compiled templates are cached."""

    def __init__(self, catalog: Mapping[str, Template]) -> None:
        self.catalog = dict(catalog)
        self._compiled: dict[tuple[str, str, str], jinja2.Template] = {}

    def get(self, name: str) -> Template:
        """The template, or TemplateNotFound."""
        try:
            return self.catalog[name]
        except KeyError:
            raise TemplateNotFound(f"no template named {name!r}") from None

    def render(self, name: str, channel: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Render the channel variant; fields come back as ``text``/``subject``/``html``/``title``/``media``."""
        tpl = self.get(name)
        variant = tpl.variants.get(channel)
        if variant is None:
            raise TemplateNotFound(f"template {name!r} has no {channel} variant")
        missing = [p for p, required in tpl.params.items() if required and params.get(p) in (None, "")]
        if missing:
            raise MissingParam(missing)
        out: dict[str, Any] = {}
        for f in CHANNEL_FIELDS[channel]:
            if f not in variant:
                continue
            key = (name, channel, f)
            compiled = self._compiled.get(key)
            if compiled is None:
                env = _html_env if f == "html" else _text_env
                compiled = self._compiled[key] = env.from_string(str(variant[f]))
            try:
                # A shared context uses params as they are instead of copying them over the
                # environment's globals: half the cost of Template.render, same sandboxed code.
                value = "".join(compiled.root_render_func(compiled.new_context(dict(params), shared=True)))
            except jinja2.UndefinedError as exc:
                raise MissingParam([_undefined_name(exc)]) from None
            except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                raise TemplateError(f"template {name!r} failed to render: {exc}") from None
            out["text" if f == "body" else f] = value
        if variant.get("media"):
            out["media"] = [str(m) for m in variant["media"]]
        return out


def _undefined_name(exc: jinja2.UndefinedError) -> str:
    # jinja says "'tier' is undefined"
    msg = str(exc)
    return msg.split("'")[1] if msg.count("'") >= 2 else msg
