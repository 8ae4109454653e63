"""The ``config.json`` of a hub-style model folder, in timm's own vocabulary.

timm's ``local-dir:`` and ``hf-hub:`` sources read ``config.json`` (``architecture``,
``num_classes``, ``model_args``, ``pretrained_cfg`` with the input size and normalisation) and then
``model.safetensors``. For a timm model snipit lets timm write that file (``save_config_for_hf``,
the writer of ``timm.models.push_to_hf_hub``; not re-exported at the top level in timm 1.0.31), so
the fields are exactly what timm reads back. Other models get the same data fields without
``architecture``: timm cannot build them, and their model card says what can.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from snipit_cli.models.arch import ArchSpec

#: The weights file of a hub-style folder, the name timm's ``local-dir:`` looks for first.
FOLDER_CHECKPOINT = "model.safetensors"


def write_hub_config(
    path: Path, model: nn.Module, arch: ArchSpec | None, model_block: dict[str, Any], snipit: dict[str, Any]
) -> None:
    """Write ``config.json`` for ``model``: timm's fields (with the input size and mean/std the
    model was pruned at) and a ``snipit`` block saying how it was made and how to load it."""
    data = {
        "input_size": tuple(model_block["input_size"]),
        "mean": tuple(model_block["mean"]) if model_block.get("mean") else None,
        "std": tuple(model_block["std"]) if model_block.get("std") else None,
    }
    data = {k: v for k, v in data.items() if v is not None}
    if arch is not None and arch.kind == "timm" and getattr(model, "pretrained_cfg", None):
        from timm.models._hub import save_config_for_hf

        save_config_for_hf(model, str(path), data_config=data, model_config={"snipit": snipit})
        return
    config = {
        "num_classes": model_block["num_classes"],
        "pretrained_cfg": {
            **{k: list(v) for k, v in data.items()},
            "num_classes": model_block["num_classes"],
        },
        "snipit": snipit,
    }
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def read_hub_config(folder: Path) -> dict[str, Any] | None:
    """A folder's ``config.json``, or None when it has none or it is not a JSON object."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None
