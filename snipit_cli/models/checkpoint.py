"""snipit checkpoints: safetensors tensors plus one JSON document in the string metadata.

The JSON (key ``snipit``) says how to rebuild the model (an :class:`ArchSpec`), so a checkpoint
reloads without pickle and without ``--arch``. Its ``storage`` block says how the tensors are
stored: ``dense``, or ``bitmask-v1`` (see :mod:`snipit_cli.models.storage`); :func:`read_tensors`
always hands back dense tensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import _remove_duplicate_names, load_file, save_file
from torch import nn

from snipit_cli.errors import ModelError
from snipit_cli.models.encodings import Storage
from snipit_cli.models.metadata_schema import SchemaError, validate
from snipit_cli.models.storage import DENSE, CorruptEncoding, decode, encode

METADATA_KEY = "snipit"
#: 2: tensors may be bitmask-encoded. Dense files still say 1, so older snipits read them, and
#: tell their users to upgrade for sparse ones instead of failing on unknown tensor names.
FORMAT_VERSION = 2
DENSE_FORMAT_VERSION = 1


def checkpoint_writer(
    model: nn.Module, document: dict[str, Any], storage: Storage = "dense"
) -> Callable[[Path], None]:
    """A function writing the checkpoint to a given (temporary) path."""
    return lambda path: save_tensors(path, *model_tensors(model), document, storage)


def model_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state_dict as safetensors' ``save_model`` stores it: each tied tensor once (its other
    names recorded as ``{alias: kept}`` metadata, as ``save_model`` does) and contiguous."""
    state = model.state_dict()
    aliases: dict[str, str] = {}
    for kept, removed in _remove_duplicate_names(state).items():
        for name in removed:
            aliases[name] = kept
            del state[name]
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}, aliases


def save_tensors(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    extra_metadata: Mapping[str, str],
    document: dict[str, Any] | None,
    storage: Storage,
) -> None:
    """Write ``tensors`` densely or bitmask-encoded, recording the encoding in the document.

    A plain file (``document`` None, or one holding nothing but a storage block) written dense
    stays plain: no snipit metadata is added.
    """
    stored, storage_doc = encode(tensors) if storage == "sparse" else (dict(tensors), {"encoding": DENSE})
    metadata = {**extra_metadata, "format": "pt"}
    dense = storage_doc["encoding"] == DENSE
    body = {k: v for k, v in (document or {}).items() if k not in ("format_version", "storage")}
    if body or document == {} or not dense:
        version = DENSE_FORMAT_VERSION if dense else FORMAT_VERSION
        metadata[METADATA_KEY] = json.dumps({"format_version": version, **body, "storage": storage_doc})
    save_file(stored, str(path), metadata=metadata)


def read_header_metadata(path: Path) -> dict[str, str]:
    """The raw string metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as safetensors: {exc}") from exc


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The snipit document of a safetensors file, or None for a plain safetensors file."""
    raw = read_header_metadata(path).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ModelError(f"{path} has unreadable snipit metadata: {_first_line(exc)}") from exc
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ModelError(f"{path} was written by a newer snipit (format {version}); upgrade snipit")
    try:
        validate(doc)
    except SchemaError as exc:
        raise ModelError(f"{path} has invalid snipit metadata: {exc}") from exc
    return doc


def read_tensors(path: Path) -> dict[str, Any]:
    """All tensors of a safetensors file on the CPU, decoded to dense whatever the storage."""
    document = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as safetensors: {exc}") from exc
    try:
        return decode(tensors, (document or {}).get("storage"))
    except CorruptEncoding as exc:
        raise ModelError(f"{path} is corrupt: {exc}") from exc


def storage_of(document: Mapping[str, Any] | None) -> str:
    """The storage encoding a checkpoint's document records (files before it: dense)."""
    storage = (document or {}).get("storage")
    return storage.get("encoding", DENSE) if isinstance(storage, Mapping) else DENSE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
