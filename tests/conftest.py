"""Shared fixtures: tiny models, a CLI runner, a data root that never touches $HOME."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub or torch.hub (which read these once): never reach for
# the network, and never see weights the developer happens to have cached.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="snipit-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from snipit_cli.cli.app import app  # noqa: E402

TESTS = Path(__file__).parent
TINY_MODELS = TESTS / "tiny_models.py"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's data cache or writes into the working directory."""
    monkeypatch.setenv("SNIPIT_DATA", str(tmp_path / "data-root"))
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)


@pytest.fixture
def cli():
    """Invoke ``snipit`` in-process; returns the click Result (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def tiny_arch() -> str:
    """``--arch`` spec of the tiny CNN as an importable module (pytest puts tests/ on the path)."""
    return "tiny_models:TinyCNN"


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A plain state_dict of TinyCNN(num_classes=5) saved with torch.save."""
    from tiny_models import TinyCNN

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(TinyCNN().state_dict(), path)
    return path


def folder_listing(folder: Path) -> set[str]:
    """Names in a folder, to check that a failed command wrote nothing."""
    return {p.name for p in folder.iterdir()}
