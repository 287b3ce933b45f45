"""The CLI reference page, generated from ``robustdml.cli.build_parser()`` so it can never drift from --help.

Each command gets its usage line, its description and a table of its options (flags, default, choices,
help) read from the argparse actions themselves.
"""

from __future__ import annotations

import argparse
from typing import List


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _flags(action: argparse.Action) -> str:
    names = ", ".join(f"`{name}`" for name in action.option_strings) if action.option_strings else f"`{action.dest}`"
    if action.nargs == 0:
        return names
    metavar = action.metavar or (action.dest.upper() if action.option_strings else None)
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    return f"{names} `{metavar}`" if metavar and action.option_strings else names


def _default(action: argparse.Action) -> str:
    default = action.default
    if default is None or default is argparse.SUPPRESS or action.nargs == 0 or isinstance(action, (
            argparse._HelpAction, argparse._VersionAction)):
        return ""
    if isinstance(default, (list, tuple)):
        default = ",".join(f"{value:g}" if isinstance(value, float) else str(value) for value in default)
    return f"`{default}`"


def _choices(action: argparse.Action) -> str:
    return ", ".join(f"`{choice}`" for choice in action.choices) if action.choices else ""


def options_table(parser: argparse.ArgumentParser) -> List[str]:
    rows = ["| option | default | choices | what it does |", "| --- | --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help is argparse.SUPPRESS:
            continue
        rows.append(f"| {_flags(action)} | {_default(action)} | {_cell(_choices(action))} | {_cell(action.help or '')} |")
    return rows


def cli_reference_markdown() -> str:
    from robustdml.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help for choice in commands._choices_actions}
    out = ["This page is generated from the command-line parser when the documentation is built.", "",
           "## robustdml", "", "```text", parser.format_usage().strip(), "```", "",
           "Options every command also takes (before or after the command name):", "", *options_table(parser), ""]
    for name, command in commands.choices.items():
        command.prog = f"robustdml {name}"
        out += [f"## robustdml {name}", "", _cell(summaries.get(name) or ""), "", "```text",
                command.format_usage().strip(), "```", "", *options_table(command), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(cli_reference_markdown())
