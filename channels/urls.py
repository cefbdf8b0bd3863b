"""Provider URLs: one URL configures one provider, and is only ever shown redacted.

``kind://user:secret@host[:port][/path]?option=value&...`` (apprise's convention). ``kind+http://``
talks plain HTTP to a local stand-in (tests, staging); plain ``kind://`` is HTTPS to the host.
``${NAME}`` inside the URL is replaced by that environment variable, so secrets stay out of files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


class ProviderURLError(ValueError):
    """A provider URL that cannot be used; the message never carries the secret."""


@dataclass(frozen=True)
class ProviderURL:
    """A parsed provider URL."""

    kind: str
    scheme: str  # http or https: how to reach the host
    user: str
    secret: str = field(repr=False)
    host: str
    port: int | None
    path: str
    options: dict[str, str]

    @property
    def base(self) -> str:
        """``scheme://host[:port]`` of the provider's API."""
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}"

    def option(self, name: str, default: str | None = None) -> str | None:
        """One ``?name=value`` option."""
        return self.options.get(name, default)

    def require(self, *names: str) -> None:
        """Fail at start when an option the provider needs is missing."""
        missing = [n for n in names if not self.options.get(n)]
        if missing:
            raise ProviderURLError(f"{self.redacted()}: missing option(s) {', '.join(missing)}")

    def redacted(self) -> str:
        """The URL as logs may show it: the secret replaced, the user cut to its first 4 characters."""
        user = (self.user[:4] + "****") if self.user else ""
        auth = f"{quote(user, safe='*')}:***@" if (self.user or self.secret) else ""
        port = f":{self.port}" if self.port else ""
        scheme = self.kind if self.scheme == "https" else f"{self.kind}+{self.scheme}"
        query = "&".join(
            f"{k}={'***' if _secretish(k) else quote(v, safe='')}" for k, v in sorted(self.options.items())
        )
        return f"{scheme}://{auth}{self.host}{port}{self.path}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.redacted()


def _secretish(name: str) -> bool:
    return any(word in name.lower() for word in ("secret", "token", "password", "key"))


def parse_provider_url(raw: str, environ: dict[str, str] | None = None) -> ProviderURL:
    """Parse (after ``${VAR}`` expansion); errors name the problem, never the secret."""
    env = dict(os.environ) if environ is None else environ

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ProviderURLError(f"provider URL refers to ${{{name}}}, which is not set")
        return env[name]

    text = _VAR.sub(expand, raw.strip())
    parts = urlsplit(text)
    if not parts.scheme or not parts.hostname:
        raise ProviderURLError("provider URL must look like kind://user:secret@host/?options")
    kind, _, transport = parts.scheme.lower().partition("+")
    if transport not in ("", "http", "https"):
        raise ProviderURLError(f"provider URL transport must be http or https, not {transport!r}")
    try:
        port = parts.port
    except ValueError:
        raise ProviderURLError("provider URL has a malformed port") from None
    return ProviderURL(
        kind=kind,
        scheme=transport or "https",
        user=unquote(parts.username or ""),
        secret=unquote(parts.password or ""),
        host=parts.hostname,
        port=port,
        path=parts.path.rstrip("/"),
        options=dict(parse_qsl(parts.query, keep_blank_values=True)),
    )
