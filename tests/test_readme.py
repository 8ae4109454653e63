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
    done = subprocess.run(
        [sys.executable, "tools/readme_archs.py", "--check"], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_first_examples_file_loads_with_plain_safetensors_and_timm(tmp_path, monkeypatch):
    """The README's main job (its own command line, with one calibration batch to keep the test
    quick: the file's layout does not depend on it), then the README's loading snippet as
    written, on that file: every way it shows gives the model snipit itself loads."""
    import shlex

    import torch
    from typer.testing import CliRunner

    import snipit_cli
    from snipit_cli.cli.app import app

    main_job = _setup_commands()[0]
    argv = shlex.split(main_job.split("&& snipit ", 1)[1])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*argv, "--batches", "1", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    snippet = README.split("so it loads without snipit", 1)[1]
    code = re.search(r"```python\n(.+?)```", snippet, re.S).group(1)
    assert "resnet18-pruned.safetensors" in code and "load_file" in code and "load_checkpoint" in code
    loaded = snipit_cli.load_model(tmp_path / "resnet18-pruned.safetensors")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = loaded(x)
    # each way in turn: the snippet up to the next way's first line, then the whole of it
    for cut in ("# or through", "model = timm.create_model(  #", None):
        scope: dict = {}
        exec(code.split(cut)[0] if cut else code, scope)
        with torch.no_grad():
            assert torch.equal(scope["model"].eval()(x), expected)
