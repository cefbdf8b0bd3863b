"""The Lua scripts for the state changes that must be atomic (one round trip each), from ``lua/``.

Every key a script touches arrives in KEYS (none is built inside a script), and every key of one
call shares the tenant's ``{hash tag}``, so the scripts also run on Redis Cluster. What a script
writes as an event or a reason was encoded in Python (``gateway.events``); the scripts apply it.
Helpers (``audit``, ``give_back``) are prepended to the scripts that use them.
"""

from __future__ import annotations

from importlib.resources import files

_LUA = files("gateway.state") / "lua"


def _load(*names: str) -> str:
    return "\n".join((_LUA / f"{name}.lua").read_text(encoding="utf-8") for name in names)


ACCEPT = _load("audit", "accept")
IDEM_RESERVE = _load("idem_reserve")
CLAIM = _load("give_back", "audit", "claim")
OUTCOME = _load("give_back", "audit", "outcome")
RECEIPT = _load("audit", "receipt")
CANCEL = _load("give_back", "audit", "cancel")
REPLAY = _load("audit", "replay")
REAP = _load("reap")
POP_DUE = _load("pop_due")
APPEND_EVENT = _load("audit", "append_event")
OPTOUT_ADD = _load("audit", "optout_add")
OPTOUT_REMOVE = _load("optout_remove")
HANDOFF = _load("handoff")
SERIES_START = _load("audit", "series_start")
SERIES_POP = _load("series_pop")
SERIES_STEP = _load("audit", "series_step")
SERIES_END = _load("give_back", "audit", "series_end")
SERIES_PATCH = _load("audit", "series_patch")
CLICK = _load("click")
FIRST_EVENT = _load("audit", "first_event")
VERIFY_START = _load("verify_start")
VERIFY_CHECK = _load("verify_check")
VERIFY_CANCEL = _load("verify_cancel")
PROVIDER_QUOTA = _load("provider_quota")
WECHAT_SPEND = _load("wechat_spend")
WECHAT_GRANT = _load("wechat_grant")
