"""snipit checkpoints: safetensors tensors plus one JSON document in the string metadata.

The JSON (key ``snipit``) says how to rebuild the model (an :class:`ArchSpec`), so a checkpoint
reloads without pickle and without ``--arch``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_model
from torch import nn

from snipit_cli.errors import ModelError
from snipit_cli.fileio import write_atomic

METADATA_KEY = "snipit"
FORMAT_VERSION = 1


def save_checkpoint(model: nn.Module, path: Path, document: dict[str, Any]) -> None:
    """Write ``model``'s tensors and ``document`` atomically."""
    write_atomic(path, checkpoint_writer(model, document))


def checkpoint_writer(model: nn.Module, document: dict[str, Any]) -> Callable[[Path], None]:
    """A function writing the checkpoint to a given (temporary) path.

    ``save_model`` (not ``save_file``) deduplicates tied tensors and makes views contiguous.
    """
    metadata = {"format": "pt", METADATA_KEY: json.dumps({"format_version": FORMAT_VERSION, **document})}
    return lambda path: save_model(model, str(path), metadata=metadata)


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The snipit document of a safetensors file, or None for a plain safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as safetensors: {exc}") from exc
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} has unreadable snipit metadata: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(
            f"{path} was written by a newer snipit (format {doc.get('format_version')}); upgrade snipit"
        )
    return doc


def read_tensors(path: Path) -> dict[str, Any]:
    """All tensors of a safetensors file on the CPU."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as safetensors: {exc}") from exc
