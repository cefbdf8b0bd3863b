"""The layout keeps its promises: small modules, a short top level, typed JSON, keys only from KEYS, docs true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "channels", "compliance", "templates")


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_gateway_top_level_holds_at_most_12_modules() -> None:
    top = sorted(p.name for p in (ROOT / "gateway").glob("*.py"))
    assert len(top) <= 12, top


# An f-string that writes a JSON object by hand: an escaped brace opening a quoted member ({{"type":...)
# or a member whose value is interpolated ("at":"{at}").
_FSTRING_JSON = re.compile(r"""\bf(['"]).*(\{\{\s*\\?["']|\\?["']:\s*\\?["']?\{)""")


def test_no_f_string_builds_json_in_the_package_code() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _modules()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if _FSTRING_JSON.search(line)
    ]
    assert found == []


_KEY_COMMANDS = re.compile(r"redis\.call\('(?P<cmd>\w+)',\s*(?P<key>[^,)]+)")
# Names that the scripts bind only to an element of KEYS (locals and helper parameters).
_FROM_KEYS = re.compile(r"local\s+([\w, ]+?)\s*=\s*KEYS\[")


@pytest.mark.parametrize("script", sorted((ROOT / "gateway/state/lua").glob("*.lua")), ids=lambda p: p.name)
def test_every_key_a_script_touches_comes_from_keys(script: Path) -> None:
    text = script.read_text()
    bound = {"stream", "key"} if script.name == "audit.lua" else set()
    if script.name == "give_back.lua":
        bound = {"key", "cap"}
    for names in _FROM_KEYS.findall(text):
        bound |= {n.strip() for n in names.split(",")}
    calls = list(_KEY_COMMANDS.finditer(text))
    assert calls, "a script that touches no key?"
    for call in calls:
        key = call.group("key").strip()
        assert re.fullmatch(r"KEYS\[[^\]]+\]", key) or key in bound, f"{script.name}: {call.group(0)}"
    assert ".. ':" not in text and "..':" not in text  # no key suffix glued on inside a script


def test_every_module_the_architecture_walk_names_exists() -> None:
    doc = (ROOT / "docs/architecture.md").read_text()
    named = set(re.findall(r"`((?:gateway|channels|compliance|templates)/[\w/]+\.(?:py|lua))`", doc))
    named |= {f"gateway/state/lua/{n}" for n in re.findall(r"`lua/(\w+\.lua)`", doc)}
    assert len(named) >= 30
    assert sorted(n for n in named if not (ROOT / n).exists()) == []
    # The walk goes from the notify endpoint to the receipt.
    assert doc.index("gateway/api/notify.py") < doc.index("gateway/api/receipts.py")
