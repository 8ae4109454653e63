"""The CI slice of ``benchmarks/coverage.py``: the architectures whose structured pruning broke
(ops torch-pruning's graph does not model, couplings it gets wrong, widths fixed in user code,
searches that never end), at 32 px, one step, two images.

Each either slims with the float64 proof and reloads bit-identically, or is refused in one line
naming the op, before any scoring and without writing a file.
"""

import json
from pathlib import Path

import pytest
import torch

from snipit_cli import load_model
from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import DataSpec
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

USER_NETS = Path(__file__).resolve().parents[1] / "benchmarks" / "user_nets.py"

#: spec -> the start of a reason every run of it must give for a kept group (None: none kept).
SLIMS = {
    "timm:ecaresnet26t": "layer1.0.downsample.1 (without one of its units, the output changes",  # ECA mixes
    "timm:res2net50_26w_4s": "layer1.1.conv1 (torch-pruning maps its channels past the 26 inputs",  # split
    "timm:edgenext_xx_small": "stages.3.blocks.1.mlp.fc2 (torch-pruning maps its channels past",
    # the ghost shortcut's coupling torch-pruning gets wrong (3e-4 in float64): kept, not abandoned
    "timm:ghostnet_100": "blocks.7.0.shortcut.2 (without one of its units, the output changes",
    "torchvision:mnasnet0_5": None,
    "user:ResNet20A": "conv1 (without one of its units, the forward fails",  # option-A padded shortcuts
    "user:LeNet5": "conv2 (without one of its units, the forward fails: RuntimeError: shape '[-1, 400]'",
    "user:SplitNet": "branch (without one of its units, the forward fails",  # chunk + cat in forward
    "user:VGG11": None,
}
REFUSED = {
    "timm:rexnet_100": "torch-pruning's dependency graph does not converge on this model",
    "torchvision:shufflenet_v2_x0_5": "torch-pruning's dependency graph cannot follow a reshape",
}


def _request(tmp_path: Path, spec: str) -> PruneRequest:
    arch = None
    if spec.startswith("user:"):
        import importlib.util

        module_spec = importlib.util.spec_from_file_location("user_nets_for_test", USER_NETS)
        nets = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(nets)
        torch.manual_seed(0)
        torch.save(nets.USER_NETS[spec[5:]]().state_dict(), tmp_path / "model.pt")
        arch, spec = f"{USER_NETS}:{spec[5:]}", str(tmp_path / "model.pt")
    return PruneRequest(
        model=ModelOptions(spec, arch=arch, num_classes=10, input_size=(3, 32, 32)),
        data=DataOptions(DataSpec("synthetic"), tmp_path, batch_size=2, batches=1),
        sparsity=0.5,
        steps=1,
        output=tmp_path / "slim.safetensors",
        structured=StructuredOptions(),
    )


@pytest.mark.parametrize("spec", sorted(SLIMS))
def test_slims_with_the_proof_and_reloads_identically(tmp_path, spec):
    request = _request(tmp_path, spec)
    outcome = run_prune(request)
    report = outcome.report
    nodes = report["nodes"]
    assert nodes["remaining"] == nodes["dense"] - round(0.5 * nodes["dense"])
    assert report["params"]["total"] < report["params"]["dense"]
    equivalence = report["pruning"]["equivalence"]
    assert equivalence["precision"] == "float64"
    assert equivalence["max_rel_diff"] <= equivalence["tolerance"] == 1e-6
    kept = report["pruning"]["limits"]["kept_groups"]
    if SLIMS[spec] is None:
        assert kept == []
    else:
        assert any(reason.startswith(SLIMS[spec]) for reason in kept), kept
    reloaded = load_model(request.output, arch=request.model.arch)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(outcome.model.eval()(x), reloaded(x))


@pytest.mark.parametrize("spec", sorted(REFUSED))
def test_a_graph_torch_pruning_cannot_build_is_one_line_naming_the_op(cli, tmp_path, spec):
    args = ("--structured", "--input-size", "3,32,32", "--num-classes", "10", "--batch-size", "2",
            "--batches", "1", "-o", "slim.safetensors")  # fmt: skip
    result = cli("prune", spec, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {REFUSED[spec]}")
    assert result.stderr.count("\n") == 1 and "prune it unstructured (without --structured)" in result.stderr
    assert list(tmp_path.glob("slim*")) == []
    assert json.dumps(result.stdout) == '""'
