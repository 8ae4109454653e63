"""``run_prune`` end to end: the saved checkpoint is the pruned model, the metadata is the report."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from snipit_cli import load_model
from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import DataSpec, parse_data_spec
from snipit_cli.errors import DataError, UsageError
from snipit_cli.layers import prunable_layers
from snipit_cli.models.checkpoint import read_metadata
from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune


def _request(tmp_path: Path, spec: str, out: str, **changes) -> PruneRequest:
    data = changes.pop("data", DataOptions(DataSpec("synthetic"), tmp_path, batch_size=4, batches=2))
    model = ModelOptions(spec, arch=changes.pop("arch", None), input_size=(3, 8, 8))
    return PruneRequest(model=model, data=data, steps=2, output=tmp_path / out, **changes)


def _zeros(model) -> int:
    return sum(int((m.weight == 0).sum()) for m in prunable_layers(model).values())


def test_saved_checkpoint_equals_pruned_model_and_metadata_equals_report(
    tmp_path, tiny_checkpoint, tiny_arch
):
    outcome = run_prune(_request(tmp_path, str(tiny_checkpoint), "p.safetensors", arch=tiny_arch))
    reloaded = load_model(tmp_path / "p.safetensors")
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(outcome.model.eval()(x), reloaded(x))
    metadata = read_metadata(tmp_path / "p.safetensors")
    assert metadata.pop("format_version") == 1  # dense storage, the default: every snipit reads it
    assert metadata.pop("storage") == {"encoding": "dense"}
    report = json.loads((tmp_path / "p.report.json").read_text())
    assert report == outcome.report
    assert report["storage"] == {"format": "dense", "encoding": "dense"}
    # the stored record is the report's model, pruning record and sparsity goal
    assert metadata.pop("model") == report["model"]
    assert metadata.pop("snipit_version") == report["snipit_version"]
    goal = metadata.pop("sparsity")
    assert goal == {k: report["sparsity"][k] for k in ("target", "achieved", "of")}
    assert metadata == report["pruning"]


def test_pruning_a_pruned_checkpoint_counts_its_zeros(tmp_path, tiny_checkpoint, tiny_arch):
    first = run_prune(_request(tmp_path, str(tiny_checkpoint), "p.safetensors", arch=tiny_arch, sparsity=0.6))
    total = first.report["params"]["prunable"]
    again = run_prune(_request(tmp_path, str(tmp_path / "p.safetensors"), "q.safetensors", sparsity=0.8))
    assert again.report["sparsity"]["achieved"] == _zeros(again.model) / total == round(0.8 * total) / total
    pruned_before = {n: m.weight == 0 for n, m in prunable_layers(first.model).items()}
    assert all((pruned_before[n] <= (m.weight == 0)).all() for n, m in prunable_layers(again.model).items())
    with pytest.raises(UsageError, match="already 0.8.* sparse"):
        run_prune(_request(tmp_path, str(tmp_path / "q.safetensors"), "r.safetensors", sparsity=0.5))
    assert not (tmp_path / "r.safetensors").exists()


def test_data_free_methods_do_not_open_the_dataset(tmp_path, tiny_checkpoint, tiny_arch):
    """Unless they recalibrate BatchNorm (on by default for real data: then it must be there)."""
    missing = DataOptions(parse_data_spec("cifar10"), tmp_path / "nothing-here")
    request = _request(
        tmp_path, str(tiny_checkpoint), "m.safetensors", arch=tiny_arch, method="magnitude", data=missing
    )
    with pytest.raises(DataError, match="nothing-here"):
        run_prune(request)
    outcome = run_prune(replace(request, recalibrate_bn=False))
    assert outcome.report["pruning"]["calibration"]["passes"] == 0
    assert outcome.report["pruning"]["calibration"]["data"] is None
    assert outcome.report["pruning"]["recalibration"] is None


def test_tied_weights_are_ranked_once(tmp_path):
    from tiny_models import TiedMLP

    torch.manual_seed(0)
    torch.save(TiedMLP().state_dict(), tmp_path / "tied.pt")
    request = _request(tmp_path, str(tmp_path / "tied.pt"), "t.safetensors", arch="tiny_models:TiedMLP")
    request.model.input_size = (1, 1, 6)
    report = run_prune(request).report
    assert report["params"]["prunable"] == 36 <= report["params"]["total"]
    assert [r.get("tied_to") for r in report["layers"]] == [None, "a"]
    assert report["sparsity"]["achieved"] == round(0.9 * 36) / 36
