"""timm's own model sources (``timm:local-dir:PATH``, ``timm:hf-hub:ORG/NAME``), pretrained
weights without a network, and library downloads kept off stdout."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from snipit_cli.models.checkpoint import read_tensors

CONFIG = {  # timm's config.json as the Hub and save_for_hf write it
    "architecture": "test_resnet",
    "num_classes": 7,
    "pretrained_cfg": {
        "input_size": [3, 32, 32],
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.2, 0.2],
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "classifier": "fc",
    },
}
MAGNITUDE = ("--method", "magnitude", "--sparsity", "0.5", "--batch-size", "2", "--batches", "1")


def _timm_folder(folder: Path) -> dict[str, torch.Tensor]:
    """A fine-tuned timm model as a folder: config.json + model.safetensors; returns its weights."""
    torch.manual_seed(0)
    state = timm.create_model("test_resnet", num_classes=7).state_dict()
    state["bn1.running_var"].uniform_(0.5, 2.0)  # trained: unlike a fresh model's ones
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    save_file(state, folder / "model.safetensors")
    return state


def _assert_pruned_from(tensors: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    assert tensors.keys() == state.keys()
    for name, value in tensors.items():
        assert torch.equal(value, torch.where(value != 0, state[name], 0)), name
    assert torch.equal(tensors["bn1.running_var"], state["bn1.running_var"])


def test_a_local_timm_folder_prunes_and_its_checkpoint_needs_the_folder_no_more(cli, tmp_path):
    state = _timm_folder(tmp_path / "mine")
    result = cli("prune", "timm:local-dir:mine", "--pretrained", *MAGNITUDE, "-o", "p.safetensors", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"]["arch"] == {
        "spec": "timm:test_resnet",
        "kwargs": {"in_chans": 3, "global_pool": "avg"},
        "num_classes": 7,
    }
    assert doc["model"]["input_size"] == [3, 32, 32]  # the folder's data config
    assert doc["model"]["mean"] == [0.5, 0.4, 0.3]
    _assert_pruned_from(read_tensors(tmp_path / "p.safetensors"), state)

    shutil.rmtree(tmp_path / "mine")
    described = cli("report", "p.safetensors", "--json")
    assert described.exit_code == 0, described.stderr
    assert json.loads(described.stdout)["model"]["num_classes"] == 7


def test_a_local_timm_folder_without_pretrained_is_its_architecture_at_random_init(cli, tmp_path):
    state = _timm_folder(tmp_path / "mine")
    result = cli("prune", f"timm:local-dir:{tmp_path / 'mine'}", *MAGNITUDE, "-o", "r.safetensors", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"]["arch"]["num_classes"] == 7  # from config.json
    tensors = read_tensors(tmp_path / "r.safetensors")
    assert tensors["fc.weight"].shape == state["fc.weight"].shape
    assert torch.equal(tensors["bn1.running_var"], torch.ones(state["bn1.running_var"].shape))  # as timm


def test_a_hub_model_in_the_local_cache_builds_offline(cli, tmp_path):
    from huggingface_hub import constants

    repo = f"models--snipit-test--{tmp_path.name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = Path(constants.HF_HUB_CACHE) / repo / "snapshots" / commit
    state = _timm_folder(snapshot)  # the hub cache layout: refs/main names the snapshot
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    spec = f"timm:hf-hub:snipit-test/{tmp_path.name}"
    result = cli("prune", spec, "--pretrained", *MAGNITUDE, "-o", "h.safetensors", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"]["arch"]["spec"] == "timm:test_resnet"
    _assert_pruned_from(read_tensors(tmp_path / "h.safetensors"), state)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timm:hf-hub:snipit-test/absent", "could not get the config of timm:hf-hub:snipit-test/absent"),
        ("timm:local-dir:absent", "config.json"),
        ("timm:timm/resnet18", "write timm:hf-hub:timm/resnet18 or timm:local-dir:timm/resnet18"),
        ("timm:gitlab:x/y", "unknown timm model source"),
        ("timm:resnet19", "did you mean resnet18"),
    ],
)
def test_timm_sources_that_cannot_build_are_one_line_errors(cli, spec, message):
    result = cli("prune", spec, *MAGNITUDE, "--input-size", "3,32,32")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pretrained_without_a_network_fails_fast(tmp_path):
    """Unreachable hub and HF_HUB_OFFLINE unset: the hub client's retries cost about 50 s."""
    proxy = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: every connection is refused
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "NO_PROXY", "no_proxy")}
    env |= {"HTTPS_PROXY": proxy, "https_proxy": proxy, "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "snipit_cli", "prune", "timm:resnet18", "--pretrained", *MAGNITUDE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert time.monotonic() - started < 25
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: could not get pretrained weights for timm:resnet18: the Hugging Face Hub at "
            "https://huggingface.co cannot be reached"
        )
    )


def test_a_library_download_prints_to_stderr_not_stdout(cli, monkeypatch):
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen reads the proxy afresh
    result = cli("prune", "torchvision:squeezenet1_1", "--pretrained", *MAGNITUDE, "--json")
    assert result.exit_code == 2 and result.stdout == ""  # `--json | jq` sees nothing but JSON
    assert 'Downloading: "https://download.pytorch.org/models/squeezenet1_1' in result.stderr
