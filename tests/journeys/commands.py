"""Every command a user is shown: the README's ``bash`` and ``python`` blocks and each command's
``--help`` epilog, extracted as they are written (the journeys run them)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUNNABLE = ("snipit ", "torchrun ")


def _clean(line: str) -> str:
    """One command: continuation lines joined, a trailing ``# comment`` dropped, spaces collapsed."""
    line = re.sub(r"\s+#\s.*$", "", line)
    return " ".join(line.split())


def _commands(text: str) -> list[str]:
    """The snipit/torchrun commands of a shell text; in ``a && b`` chains, the runnable parts."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            part = _clean(part)
            if part.startswith(RUNNABLE):
                out.append(part)
    return out


def readme_commands() -> list[str]:
    return [c for block in re.findall(r"```bash\n(.*?)```", README, re.S) for c in _commands(block)]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def epilog_commands() -> list[str]:
    from typer.main import get_command

    from snipit_cli.cli.app import app

    commands = get_command(app).commands.values()
    return [c for command in commands for c in _commands(command.epilog or "")]


def all_commands() -> list[str]:
    """README commands first, then epilog ones not already in the README, each once."""
    return list(dict.fromkeys(readme_commands() + epilog_commands()))
