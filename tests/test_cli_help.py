"""``--help`` everywhere: every command, step and option has help text, and every command's help ends with one
example command line, printed unwrapped."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line: ``darkflow``, each command, each group and each of its steps."""
    from darkflow.cli import build_parser

    found, todo = [], [("", build_parser())]
    while todo:
        path, parser = todo.pop()
        found.append((path, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{path} {name}".strip(), sub) for name, sub in action.choices.items()]
    return found


def _sub(path: str) -> argparse.ArgumentParser:
    return dict(_parsers())[path]


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def test_the_walk_reaches_every_verb():
    from darkflow.cli import GROUPS, VERBS

    assert {path for path, _ in _parsers()} == {"", *GROUPS, *(verb.name for verb in VERBS)}


@pytest.mark.parametrize("path", sorted(path for path, _ in _parsers()))
def test_every_option_and_command_has_help(path):
    parser = _sub(path)
    assert (parser.description or "").strip(), f"'darkflow {path}' has no description"
    for action in parser._actions:
        assert (action.help or "").strip(), f"'darkflow {path}': {action.option_strings or action.dest} has no help"
        if isinstance(action, argparse._SubParsersAction):
            listed = {pseudo.dest: pseudo.help for pseudo in action._choices_actions}
            assert set(listed) == set(action.choices), f"'darkflow {path}' lists {sorted(listed)}"
            assert all((text or "").strip() for text in listed.values()), listed


@pytest.mark.parametrize("path", sorted(path for path, _ in _parsers()))
def test_help_ends_with_one_unwrapped_example(path):
    """Through the console entry point, as a user types it."""
    out = subprocess.run([sys.executable, "-m", "darkflow", *path.split(), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    examples = [line for line in out.stdout.splitlines() if line.startswith("example: ")]
    assert len(examples) == 1, out.stdout
    command = examples[0].removeprefix("example: ")
    assert command.startswith(" ".join(["darkflow", *path.split(), ""])), command
    assert out.stdout.rstrip().endswith(command)
    from darkflow.cli import GROUPS, VERBS

    given = {verb.name: verb.example for verb in VERBS} | {name: group[2] for name, group in GROUPS.items()}
    if path in given:
        assert command == given[path]


def test_common_options_have_help():
    """--config, --set, -q, --threads and --list: on every verb that has them, with their meaning."""
    from darkflow.cli import VERBS

    seen = set()
    for verb in VERBS:
        for action in _sub(verb.name)._actions:
            for name in ("--config", "--set", "--quiet", "--threads", "--list"):
                if name in action.option_strings:
                    seen.add(name)
                    assert len(action.help.split()) >= 3, (verb.name, name, action.help)
    assert seen == {"--config", "--set", "--quiet", "--threads", "--list"}


def test_top_level_help_lists_every_command_with_its_help():
    from darkflow.cli import GROUPS, VERBS

    text = _squeeze(subprocess.run([sys.executable, "-m", "darkflow", "--help"], capture_output=True, text=True,
                                   check=True).stdout)
    top = {verb.name: verb.help for verb in VERBS if " " not in verb.name} | {k: v[0] for k, v in GROUPS.items()}
    for name, help_text in top.items():
        assert f"{name} {_squeeze(help_text)}" in text, name
    group = _squeeze(subprocess.run([sys.executable, "-m", "darkflow", "cflow", "--help"], capture_output=True,
                                    text=True, check=True).stdout)
    for verb in VERBS:
        if verb.name.startswith("cflow "):
            assert f"{verb.name.split()[1]} {_squeeze(verb.help)}" in group


def test_every_flag_says_what_it_does():
    """Not only the Config key that --help adds to a flag whose key differs from its name."""
    from darkflow.cli import VERBS

    bare = [f"{verb.name} {item.names[0]}" for verb in VERBS for item in verb.flags if len(item.help.split()) < 2]
    assert not bare, bare
