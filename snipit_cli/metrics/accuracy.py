"""Top-1 / top-5 accuracy and mean cross-entropy over evaluation batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snipit_cli.types import Batch


def evaluate(model: nn.Module, *, batches: Iterable[Batch]) -> dict[str, Any]:
    """Accuracy and mean loss of ``model`` (eval mode) over every sample of ``batches``."""
    model.eval()
    top1 = top5 = samples = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for x, y in batches:
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += int((best[:, 0] == y).sum())
            top5 += int((best == y[:, None]).any(dim=1).sum())
            samples += len(y)
    if samples == 0:
        return {"samples": 0, "top1": None, "top5": None, "loss": None}
    return {"samples": samples, "top1": top1 / samples, "top5": top5 / samples, "loss": loss_sum / samples}
