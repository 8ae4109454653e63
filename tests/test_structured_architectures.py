"""SNAP-it on the architectures people use: slim, smaller, equivalent, reloadable, trainable."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from snipit_cli import load_model
from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import DataSpec
from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune
from snipit_cli.workflows.structured import StructuredOptions

ARCHS = [
    "timm:resnet18",
    "timm:resnet50",
    "timm:mobilenetv3_small_100",
    "timm:efficientnet_b0",
    "timm:convnext_atto",
    "timm:densenet121",
    "timm:regnety_002",
    "timm:vgg11_bn",
    "torchvision:resnet18",
    "torchvision:mobilenet_v2",
    "timm:vit_tiny_patch16_224",  # whole attention heads and MLP hidden units
]


def _structured(tmp_path: Path, spec: str, target: str = "nodes") -> PruneRequest:
    kwargs = {"img_size": 32} if "vit" in spec else None
    return PruneRequest(
        model=ModelOptions(spec, num_classes=10, input_size=(3, 32, 32), arch_kwargs=kwargs),
        data=DataOptions(DataSpec("synthetic"), tmp_path, batch_size=2, batches=1),
        sparsity=0.5,
        steps=1,
        output=tmp_path / "slim.safetensors",
        structured=StructuredOptions(target=target),
    )


@pytest.mark.parametrize("spec", ARCHS)
def test_snap_it_halves_nodes_and_the_slim_model_is_real(tmp_path, spec):
    outcome = run_prune(_structured(tmp_path, spec))
    report = outcome.report
    nodes = report["nodes"]
    assert nodes["remaining"] == nodes["dense"] - round(0.5 * nodes["dense"])
    assert report["params"]["total"] < report["params"]["dense"]
    assert report["macs"]["pruned"] < report["macs"]["dense"]
    assert report["equivalence"]["max_rel_diff"] <= 1e-4  # the tool's own check passed

    reloaded = load_model(tmp_path / "slim.safetensors")
    assert sum(p.numel() for p in reloaded.parameters()) == report["params"]["total"]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(outcome.model.eval()(x), reloaded(x))

    reloaded.train()
    F.cross_entropy(reloaded(x), torch.tensor([1, 2])).backward()
    no_grad = [n for n, p in reloaded.named_parameters() if p.grad is None]
    assert no_grad == []


def test_target_macs_is_reached_within_one_percent(tmp_path):
    report = run_prune(_structured(tmp_path, "timm:mobilenetv3_small_100", target="macs")).report
    assert report["sparsity"]["of"] == "macs"
    assert 0.5 <= report["macs"]["removed"] <= 0.51
    assert report["sparsity"]["achieved"] == report["macs"]["removed"]
