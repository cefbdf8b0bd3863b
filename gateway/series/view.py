"""A series as the API shows it, from the fields its hash stores."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.timeutil import rfc3339
from templates.series import SeriesDefinition, Step

_decode = msgspec.json.Decoder()


def render_view(f: dict[str, str], definition: SeriesDefinition | None) -> dict[str, Any]:
    """A series as the API shows it, from its stored fields (``_fp`` included for the caller to drop)."""
    steps = []
    for i in range(1, int(f.get("n", "0") or 0) + 1):
        step: Step | None = definition.steps[i - 1] if definition is not None else None
        steps.append(
            {
                "name": step.name if step else str(i),
                "template": step.template if step else None,
                "channel": step.channel if step else None,
                "due_at": rfc3339(f.get(f"d{i}")),
                "status": f.get(f"s{i}", "pending"),
                "notification_id": f.get(f"x{i}") or None,
                "reasons": _decode.decode(f[f"r{i}"]) if f.get(f"r{i}") else [],
            }
        )
    return {
        "id": f.get("id", ""),
        "definition": f.get("def", ""),
        "status": f.get("status", ""),
        "to": f.get("masked", ""),
        "brand": f.get("brand") or None,
        "anchor_at": rfc3339(f.get("anchor")),
        "key": f.get("key") or None,
        "params": _decode.decode(f.get("params") or "{}"),
        "metadata": _decode.decode(f.get("metadata") or "{}"),
        "created_at": rfc3339(f.get("created_at")),
        "updated_at": rfc3339(f.get("updated_at")),
        "ended_at": rfc3339(f.get("ended_at")),
        "end_reason": f.get("end_reason") or None,
        "steps": steps,
        "_fp": f.get("fp", ""),
    }
