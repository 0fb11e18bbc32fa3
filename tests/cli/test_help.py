"""`--help` of every command: each option says what it does and, when it has a default, what that is."""

import argparse

from clipblip.cli import parser


def _commands(p, path=("clipblip",)):
    """(the command's words, its parser) for the top parser and every subcommand, nested ones too."""
    yield " ".join(path), p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _shown_default(action) -> bool:
    return action.default is not None and action.default is not False and action.default != argparse.SUPPRESS


COMMANDS = dict(_commands(parser()))


def _faults(command: str, p) -> list[str]:
    shown = "".join(p.format_help().split())  # as printed, less the spaces and line breaks of its wrapping
    faults = []
    for action in p._actions:
        if not action.option_strings:
            continue
        text = p._get_formatter()._expand_help(action) if action.help else ""
        if not text or "".join(text.split()) not in shown:
            faults.append(f"{command} {action.option_strings[0]}: no description")
        elif _shown_default(action) and str(action.default) not in text:
            faults.append(f"{command} {action.option_strings[0]}: default {action.default!r} not in {text!r}")
    return faults


def test_every_option_of_every_command_has_a_description_and_shows_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    faults = [f for command, p in COMMANDS.items() for f in _faults(command, p)]
    assert not faults, "\n".join(faults)


def test_compare_says_which_n_the_readme_figures_used():
    assert {"clipblip data shapes", "clipblip index search", "clipblip serve"} <= set(COMMANDS)  # nested ones too
    text = " ".join(COMMANDS["clipblip compare"].format_help().split())
    assert "(default: 300;" in text and "--n 200" in text
