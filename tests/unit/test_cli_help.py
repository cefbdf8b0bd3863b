"""Every option of every `tidings` command says what it is for and shows its default."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from gateway.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and, depth first, every subparser under it, with the command line that reaches it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_tree_is_the_whole_command() -> None:
    names = {name for name, _ in _parsers(build_parser(), "tidings")}
    assert {"tidings audit search", "tidings optouts export", "tidings dlq replay", "tidings dev"} <= names
    assert len(names) >= 20


def test_every_parser_shows_defaults() -> None:
    for name, parser in _parsers(build_parser(), "tidings"):
        assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name


def test_every_option_has_help_and_its_help_shows_its_default() -> None:
    problems: list[str] = []
    checked = 0
    for name, parser in _parsers(build_parser(), "tidings"):
        output = _flat(parser.format_help())
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            flag = "/".join(action.option_strings)
            if action.help is None or action.help == argparse.SUPPRESS or not action.help.strip():
                problems.append(f"{name} {flag}: no help")
                continue
            # The help as the output shows it (the formatter adds the default, then expands %()s).
            shown = _flat(formatter._expand_help(action))
            if shown not in output:
                problems.append(f"{name} {flag}: help not in the output: {shown!r}")
            if action.default is not None and action.default is not False:
                checked += 1
                if f"(default: {action.default})" not in shown:
                    problems.append(f"{name} {flag}: default {action.default!r} not shown: {shown!r}")
    assert problems == []
    assert checked >= 10  # --limit, --batch, --lease, --port, --host, --category...


def test_every_positional_and_subcommand_has_help() -> None:
    problems: list[str] = []
    for name, parser in _parsers(build_parser(), "tidings"):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                problems += [
                    f"{name} {c.dest}" for c in action._choices_actions if not (c.help or "").strip()
                ]
            elif not action.option_strings and not (action.help or "").strip():
                problems.append(f"{name} {action.dest}")
    assert problems == []


def test_every_data_dir_option_states_the_discovery_rule() -> None:
    seen = 0
    for name, parser in _parsers(build_parser(), "tidings"):
        for action in parser._actions:
            if "--data-dir" in action.option_strings:
                seen += 1
                assert action.default is None, name  # "not given" must be told from "./var"
                assert "TIDINGS_DATA_DIR" in (action.help or ""), name
                assert "./var" in (action.help or ""), name
    assert seen >= 12  # dev, serve, worker, keys create, dlq x2, optouts x2, audit x5
