"""The ``[wechat]`` variant of a template: a subscribe message's template id, page and data values.

```toml
[wechat]
template_id = "tmpl-points-expiry"
page = "pages/points/index?from=notice"
[wechat.data]
thing1 = "{{ points }}积分即将过期"
date2 = "{{ date }}"
```

``template_id`` is the mini program's own (as given); ``page`` and each data value are rendered
from the params like any other field. A rendered message is ``{"template_id", "page", "data":
{"thing1": {"value": "..."}}}``, what free content gives as ``content.template_id/page/data``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

FIELDS = ("template_id", "page", "data")
_DATA_KEY = re.compile(r"[a-z_]+[0-9]+")


def check_variant(variant: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """The variant's renderable sources as (field, source), or ValueError naming what is wrong."""
    unknown = set(variant) - set(FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} in [wechat]")
    if not isinstance(variant.get("template_id"), str) or not variant["template_id"]:
        raise ValueError(f"{where}: [wechat] needs a template_id")
    data = variant.get("data")
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f'{where}: [wechat] needs a data table (thing1 = "...")')
    sources = [("page", str(variant["page"]))] if variant.get("page") else []
    for key, value in data.items():
        if not _DATA_KEY.fullmatch(str(key)) or not isinstance(value, str):
            raise ValueError(f"{where}: [wechat.data] {key!r} must be a type and number (thing1) = a string")
        sources.append((f"data.{key}", value))
    return sources


def render_variant(variant: Mapping[str, Any], render: Callable[[str, str], str]) -> dict[str, Any]:
    """The rendered message; ``render(field, source)`` renders one source text."""
    out: dict[str, Any] = {"template_id": str(variant["template_id"])}
    if variant.get("page"):
        out["page"] = render("page", str(variant["page"]))
    out["data"] = {str(k): {"value": render(f"data.{k}", str(v))} for k, v in variant["data"].items()}
    return out
