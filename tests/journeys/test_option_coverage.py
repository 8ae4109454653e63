"""Every user-facing option of every command is used by some test through the CLI.

A test "uses" an option of command C when a test file that invokes C (a quoted ``"C"``) names the
flag, or when a command shown to users (README, epilogs: run by the journeys) does. Options
added without a test fail here, listed by command.
"""

from __future__ import annotations

import re
from pathlib import Path

from journeys.commands import all_commands

TESTS = Path(__file__).parents[1]


def _names(flag: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def _untested() -> dict[str, list[str]]:
    from typer.main import get_command

    from snipit_cli.cli.app import app

    sources = [p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py") if p.name != Path(__file__).name]
    shown = all_commands()
    missing: dict[str, list[str]] = {}
    for name, command in get_command(app).commands.items():
        texts = [t for t in sources if re.search(rf"[\"']{name}[\"']", t)]
        texts += [c for c in shown if re.match(rf"(snipit|torchrun .*?) {name}\b", c) or f" {name} " in c]
        blob = "\n".join(texts)
        for param in command.params:
            flags = [*param.opts, *param.secondary_opts]
            if any(f.startswith("-") for f in flags) and not any(_names(f, blob) for f in flags):
                missing.setdefault(name, []).append(max(param.opts, key=len))
    return missing


def test_every_option_of_every_command_is_used_by_a_test():
    assert _untested() == {}
