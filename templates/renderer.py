"""Template catalogue loading and sandboxed rendering that fails on a missing param."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from jinja2 import nodes, sandbox
from jinja2.sandbox import SandboxedEnvironment

from templates import wechat

CATALOG_DIR = Path(__file__).with_name("catalog")
CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    "sms": ("text",),
    "mms": ("text",),
    "push": ("title", "body"),
    "email": ("subject", "text", "html"),
    "voice": ("text",),  # what the call says (text to speech)
}
# A call cannot show a link: a voice variant that writes one is refused when it is stored.
_LINK_TEXT = ("http://", "https://", "www.")


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


# A verification template (验证码) carries a one-time code: no unsubscribe footer, no cap, no quiet
# hours, and only ``POST /v1/verifications`` sends it.
TEMPLATE_CATEGORIES = ("marketing", "transactional", "verification")


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
        if category not in TEMPLATE_CATEGORIES:
            raise InvalidTemplate(f"{source}: category must be one of {', '.join(TEMPLATE_CATEGORIES)}")
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
                    _refuse_unsafe(env, str(variant[f]), f"{source}: [{channel}] {f}")
                    if channel == "voice":
                        _refuse_links(env, str(variant[f]), f"{source}: [voice] {f}")
            variants[channel] = variant
        if "wechat" in data:
            variant = dict(data["wechat"])
            for f, text in wechat.check_variant(variant, source):
                _text_env.from_string(text)
                _refuse_unsafe(_text_env, text, f"{source}: [wechat] {f}")
            variants["wechat"] = variant
    except ValueError as exc:
        raise InvalidTemplate(str(exc)) from None
    except (KeyError, TypeError, AttributeError, jinja2.TemplateSyntaxError) as exc:
        raise InvalidTemplate(f"{source}: {exc}") from None
    return Template(name, category, str(data.get("description", "")), params, variants)


# What the sandbox refuses on every object (jinja2.sandbox): private and dunder attributes and the
# internals of functions, methods, frames and generators. Written in a template, such an access can
# never render, so it is refused when the template is stored, not at every notify.
_UNSAFE_ATTRIBUTES = (
    sandbox.UNSAFE_FUNCTION_ATTRIBUTES
    | sandbox.UNSAFE_METHOD_ATTRIBUTES
    | sandbox.UNSAFE_GENERATOR_ATTRIBUTES
    | sandbox.UNSAFE_COROUTINE_ATTRIBUTES
    | sandbox.UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
    | {"mro", "tb_frame", "f_globals", "f_locals", "f_builtins"}
)


def _refuse_unsafe(env: jinja2.Environment, source: str, where: str) -> None:
    """An InvalidTemplate for each attribute or item the sandbox would refuse, written literally."""
    refused: dict[str, int] = {}
    for node in env.parse(source).find_all((nodes.Getattr, nodes.Getitem)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and (name.startswith("_") or name in _UNSAFE_ATTRIBUTES):
            refused.setdefault(name, node.lineno)
    if refused:
        names = sorted(refused, key=source.find)
        raise InvalidTemplate(
            f"{where}: {', '.join(map(repr, names))} not available in templates "
            f"(the sandbox refuses it; line {refused[names[0]]})"
        )


def _refuse_links(env: jinja2.Environment, source: str, where: str) -> None:
    """An InvalidTemplate for a ``{{ link(...) }}`` or a literal URL in a voice variant."""
    tree = env.parse(source)
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "link":
            raise InvalidTemplate(
                f"{where}: a call cannot carry a link ({{{{ link() }}}} at line {call.lineno})"
            )
    for data in tree.find_all(nodes.TemplateData):
        lowered = data.data.lower()
        for marker in _LINK_TEXT:
            if marker in lowered:
                raise InvalidTemplate(f"{where}: a call cannot carry a link ({marker!r} in the text)")


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


# -- the fast path ---------------------------------------------------------------------------------
# Most message templates only print params, with an optional default, and test whether an
# optional param was given. Such a template is turned into a list of steps that render the
# same text as Jinja, several times faster; anything else renders through Jinja.
_TEXT, _VAR, _IF, _LINK = 0, 1, 2, 3
_NO_DEFAULT = object()


def _same(url: str) -> str:
    return url


Steps = list[tuple[Any, ...]]


def simple_steps(env: jinja2.Environment, source: str) -> Steps | None:
    """The steps of a template made only of text, ``{{ p }}``, ``{{ p|default('x') }}``,
    ``{{ link("https://...") }}`` and ``{% if p is defined %}...{% else %}...{% endif %}``; None for
    anything else."""
    try:
        return _steps(env.parse(source).body)
    except _NotSimple:
        return None


class _NotSimple(Exception):
    pass


def _steps(body: list[nodes.Node]) -> Steps:
    out: Steps = []
    for node in body:
        if isinstance(node, nodes.Output):
            for part in node.nodes:
                if isinstance(part, nodes.TemplateData):
                    out.append((_TEXT, part.data))
                elif isinstance(part, nodes.Name):
                    out.append((_VAR, part.name, _NO_DEFAULT))
                elif (
                    isinstance(part, nodes.Filter)
                    and part.name == "default"
                    and isinstance(part.node, nodes.Name)
                    and len(part.args) == 1
                    and isinstance(part.args[0], nodes.Const)
                    and isinstance(part.args[0].value, str)
                    and not part.kwargs
                    and part.dyn_args is None
                    and part.dyn_kwargs is None
                ):
                    out.append((_VAR, part.node.name, part.args[0].value))
                elif (
                    isinstance(part, nodes.Call)
                    and isinstance(part.node, nodes.Name)
                    and part.node.name == "link"
                    and len(part.args) == 1
                    and isinstance(part.args[0], nodes.Const)
                    and isinstance(part.args[0].value, str)
                    and not part.kwargs
                    and part.dyn_args is None
                    and part.dyn_kwargs is None
                ):
                    out.append((_LINK, part.args[0].value))
                else:
                    raise _NotSimple
        elif (
            isinstance(node, nodes.If)
            and isinstance(node.test, nodes.Test)
            and node.test.name == "defined"
            and isinstance(node.test.node, nodes.Name)
            and not node.test.args
            and not node.test.kwargs
            and not node.elif_
        ):
            out.append((_IF, node.test.node.name, _steps(node.body), _steps(node.else_)))
        else:
            raise _NotSimple
    return out


def run_steps(
    steps: Steps,
    params: Mapping[str, Any],
    escape: bool,
    out: list[str],
    link: Callable[[str], str] = _same,
) -> None:
    """Render steps into ``out``; a param printed without a default and not given is MissingParam."""
    for step in steps:
        kind = step[0]
        if kind == _TEXT:
            out.append(step[1])
        elif kind == _LINK:
            out.append(str(markupsafe.escape(link(step[1]))) if escape else link(step[1]))
        elif kind == _VAR:
            value = params.get(step[1], _NO_DEFAULT)
            if value is _NO_DEFAULT:
                value = step[2]
                if value is _NO_DEFAULT:
                    raise MissingParam([step[1]])
            out.append(str(markupsafe.escape(value)) if escape else str(value))
        else:
            run_steps(step[2] if step[1] in params else step[3], params, escape, out, link)


class Renderer:
    """Renders catalogue templates for a channel; compiled templates are cached."""

    def __init__(self, catalog: Mapping[str, Template]) -> None:
        self.catalog = dict(catalog)
        self._compiled: dict[tuple[str, str, str], tuple[jinja2.Template, Steps | None]] = {}

    def get(self, name: str) -> Template:
        """The template, or TemplateNotFound."""
        try:
            return self.catalog[name]
        except KeyError:
            raise TemplateNotFound(f"no template named {name!r}") from None

    def render(
        self, name: str, channel: str, params: Mapping[str, Any], link: Callable[[str], str] = _same
    ) -> dict[str, Any]:
        """Render the channel variant; fields come back as ``text``/``subject``/``html``/``title``/``media``.

        ``link(url)`` is what ``{{ link("https://...") }}`` writes: the message's own short URL when
        links are tracked, the URL itself otherwise.
        """
        tpl = self.get(name)
        variant = tpl.variants.get(channel)
        if variant is None:
            raise TemplateNotFound(f"template {name!r} has no {channel} variant")
        missing = [p for p, required in tpl.params.items() if required and params.get(p) in (None, "")]
        if missing:
            raise MissingParam(missing)
        if channel == "wechat":
            return wechat.render_variant(
                variant, lambda f, source: self._field(name, channel, f, source, params, link)
            )
        out: dict[str, Any] = {}
        for f in CHANNEL_FIELDS[channel]:
            if f in variant:
                out["text" if f == "body" else f] = self._field(
                    name, channel, f, str(variant[f]), params, link
                )
        if variant.get("media"):
            out["media"] = [str(m) for m in variant["media"]]
        return out

    def _field(
        self,
        name: str,
        channel: str,
        f: str,
        source: str,
        params: Mapping[str, Any],
        link: Callable[[str], str],
    ) -> str:
        """One field's source rendered (compiled once per template, channel and field)."""
        key = (name, channel, f)
        found = self._compiled.get(key)
        if found is None:
            env = _html_env if f == "html" else _text_env
            found = self._compiled[key] = (env.from_string(source), simple_steps(env, source))
        compiled, steps = found
        try:
            if steps is not None:
                parts: list[str] = []
                run_steps(steps, params, f == "html", parts, link)
                return "".join(parts)
            # A shared context uses params as they are instead of copying them over the
            # environment's globals: half the cost of Template.render, same sandboxed code.
            return "".join(
                compiled.root_render_func(compiled.new_context({**params, "link": link}, shared=True))
            )
        except MissingParam:
            raise
        except jinja2.UndefinedError as exc:
            raise MissingParam([_undefined_name(exc)]) from None
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateError(f"template {name!r} failed to render: {exc}") from None


def _undefined_name(exc: jinja2.UndefinedError) -> str:
    # jinja says "'tier' is undefined"
    msg = str(exc)
    return msg.split("'")[1] if msg.count("'") >= 2 else msg
