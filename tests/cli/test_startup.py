"""Start-up: the CLI must answer --help, --version and usage errors without importing torch, timm or
torch-pruning (seconds and hundreds of MiB); a command imports them when it runs. The time itself is
measured by ``benchmarks/startup.py``, not here."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "torch_pruning", "torchvision", "numpy", "safetensors")

#: Runs the console script's entry point in a fresh interpreter, then names the heavy modules it loaded.
PROBE = """
import sys
sys.argv = ["snipit", *sys.argv[1:]]
from snipit_cli.cli.app import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
sys.stderr.write(f"\\nexit={{code}} heavy={{','.join(heavy)}}\\n")
"""


def _probe(*args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, timeout=60
    )
    return done.stdout, done.stderr.rstrip().rsplit("\n", 1)[-1]


def test_importing_the_app_imports_no_torch() -> None:
    code = f"import sys, snipit_cli.cli.app; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (("--help",), 0),
        (("--version",), 0),
        (("prune", "--help"), 0),
        (("report", "--help"), 0),
        (("compare", "--help"), 0),
        (("train", "--help"), 0),
        (("convert", "--help"), 0),
        (("export", "--help"), 0),
        (("prune", "--sparsity", "abc", "m.pt"), 2),
        (("prune",), 2),
        (("no-such-command",), 2),
    ],
)
def test_help_version_and_usage_errors_do_not_import_torch(args, exit_code) -> None:
    out, status = _probe(*args)
    assert status == f"exit={exit_code} heavy="
    if args[-1] == "--help":
        assert "Usage: snipit" in out


def test_a_command_that_runs_imports_what_it_needs() -> None:
    """The probe can see an import: `methods` lists the registered criteria, which live with torch."""
    out, status = _probe("methods")
    assert status.startswith("exit=0 heavy=") and "torch" in status.split("heavy=")[1].split(",")
    assert "snip-it" in out


def test_library_names_resolve_on_first_use() -> None:
    import snipit_cli

    assert snipit_cli.__version__
    assert callable(snipit_cli.load_model)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        snipit_cli.nope  # noqa: B018
