"""``snipit convert`` as a library call: rewrite a safetensors file's tensors dense or sparse.

The conversion is lossless either way (decoding is bit-identical), needs no model, and keeps the
snipit metadata document, so the output reloads exactly as the input did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snipit_cli.errors import ModelError, UsageError
from snipit_cli.fileio import check_writable, write_atomic
from snipit_cli.models.checkpoint import (
    METADATA_KEY,
    Storage,
    read_header_metadata,
    read_metadata,
    read_tensors,
    save_tensors,
    storage_of,
)
from snipit_cli.models.storage import dense_nbytes
from snipit_cli.workflows.documents import file_block, ordered, source_file_block, storage_block


@dataclass
class ConvertRequest:
    """``snipit convert IN OUT --storage ...``, parsed."""

    source: Path
    output: Path
    storage: Storage
    force: bool = False


def run_convert(request: ConvertRequest) -> dict[str, Any]:
    """Convert, write atomically, and say what came out (sizes and the encoding)."""
    source, output = request.source, request.output
    _check_paths(source, output, request.force)
    document = read_metadata(source)
    tensors = read_tensors(source)  # decoded and checked: a corrupt input never gets copied
    extra = {k: v for k, v in read_header_metadata(source).items() if k not in (METADATA_KEY, "format")}
    write_atomic(output, lambda tmp: save_tensors(tmp, tensors, extra, document, request.storage))
    written = read_metadata(output) or {}
    encoding, stored = storage_of(written), written.get("storage") or {}
    params = sum(t.numel() for t in tensors.values())
    return ordered(
        "convert",
        {
            "source_file": source_file_block(source),
            "file": file_block(output, output.stat().st_size, params, dense_nbytes(tensors)),
            "storage": storage_block(encoding, request.storage),
            "tensors": len(tensors),
            "encoded_tensors": len(stored.get("tensors", {})),
            "size_ratio": output.stat().st_size / source.stat().st_size,
            "notes": [],
        },
    )


def _check_paths(source: Path, output: Path, force: bool) -> None:
    if not source.is_file():
        what = "is a folder" if source.is_dir() else "does not exist"
        raise ModelError(f"{source} {what}; pass a .safetensors file")
    if source.suffix != ".safetensors":
        raise UsageError(
            f"convert reads .safetensors files, got {source}; load a state_dict with "
            "snipit train/prune --arch instead"
        )
    if output.suffix != ".safetensors":
        raise UsageError(f"OUT must end in .safetensors, got {output}")
    check_writable(output, force, (source,))
