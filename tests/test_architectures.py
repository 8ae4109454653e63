"""Smoke test over real architectures: every one prunes to the exact target, nothing crashes,
and layers that get no gradient are named in the report rather than silently collapsed."""

import pytest
import torch

from snipit_cli.criteria.snip import Snip
from snipit_cli.data.calibration import SyntheticData
from snipit_cli.models.loading import resolve_model
from snipit_cli.pruning.engine import prune
from snipit_cli.pruning.targets import prunable_weights

ARCHS = [
    ("timm:resnet18", 32),
    ("timm:mobilenetv3_small_050", 32),
    ("timm:efficientnet_b0", 32),
    ("timm:vit_tiny_patch16_224", 32),
    ("torchvision:googlenet", 32),  # auxiliary heads are unused in eval mode
    ("torchvision:squeezenet1_1", 48),
    ("torchvision:mobilenet_v3_small", 32),
]


@pytest.mark.parametrize(("spec", "px"), ARCHS)
def test_snip_prunes_real_architectures_exactly(spec, px):
    torch.manual_seed(0)
    kwargs = {"img_size": px} if "vit" in spec else {}
    model = resolve_model(spec, num_classes=10, arch_kwargs=kwargs).model
    weights = prunable_weights(model)
    data = SyntheticData(
        spec="synthetic", batch_size=2, n_batches=1, seed=0, size=(3, px, px), num_classes=10
    )
    result = prune(
        model,
        weights=weights,
        criterion=Snip(),
        batches_for_step=data.batches,
        schedule=[0.8],
        n_batches=data.n_batches,
    )
    total = sum(w.numel() for w in weights.values())
    assert sum(int((w == 0).sum()) for w in weights.values()) == round(0.8 * total)
    unused = {name for name in weights if "aux" in name}
    assert unused <= set(result.zero_score_layers)
    if spec.startswith("timm:resnet"):
        assert result.zero_score_layers == []  # residual branches are not zero-initialised


def test_timm_resnets_are_built_without_zero_initialised_residual_norms():
    model = resolve_model("timm:resnet18").model
    assert all(bool((block.bn2.weight != 0).all()) for block in model.layer1)
