"""The README's set-up commands are the ones CI runs and the ones that work."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _setup_commands() -> list[str]:
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = _setup_commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert "snipit prune" in main_job and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == tests


def test_constraints_pin_the_tested_torch():
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins


def test_every_option_of_every_command_is_documented():
    from typer.main import get_command

    from snipit_cli.cli.app import app

    commands = get_command(app).commands.values()
    flags = {
        opt for c in commands for p in c.params for opt in getattr(p, "opts", []) if opt.startswith("--")
    }
    documented = set(re.findall(r"--[a-z][a-z-]*[a-z]", README))
    assert sorted(flags - documented) == []


def test_dependencies_have_lower_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!~ ]", d)[0]: d for d in project["dependencies"]}
    assert {"torch", "torchvision", "timm", "typer", "rich", "safetensors", "torch-pruning"} <= deps.keys()
    assert all(">=" in d for d in deps.values())


def test_every_test_the_safety_section_names_exists():
    section = README.split("## Safety", 1)[1].split("\n## ", 1)[0]
    named, current = [], None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", section):
        current = path or current
        named.append((current, name))
    assert named, "the Safety section names its tests"
    missing = [f"{p}::{n}" for p, n in named if f"def {n}(" not in (ROOT / p).read_text()]
    assert missing == []


def test_the_tested_architectures_are_generated_from_the_coverage_results():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "tools/readme_archs.py", "--check"], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
