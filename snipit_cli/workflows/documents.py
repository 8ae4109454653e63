"""The one JSON vocabulary of snipit's results: prune's report, ``train``, ``report``, ``compare``,
``convert`` and ``methods`` with ``--json``.

Every document starts with ``schema_version``, ``snipit_version`` and ``command``; a concept has
one block and one key wherever it appears (``params``, ``sparsity``, ``macs``, ``nodes``,
``storage``, ``file``, ``run``, ``notes``...), built here by one function each. :data:`KEYS` lists
each block's keys; the README's format tables are tested against it, and so are the documents the
commands really print.

The checkpoint's own metadata (the ``snipit`` entry of its safetensors header) is a storage
format with its ``format_version``, read by ``models/checkpoint.py``; it keeps its layout so every
checkpoint written so far still loads. The documents here are derived from it, so a checkpoint's
``pruning`` block is the same in prune's report and in ``snipit report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import snipit_cli
from snipit_cli.metrics.connectivity import Connectivity, connectivity
from snipit_cli.metrics.macs import count_macs, macs_by_module
from snipit_cli.metrics.sparsity import layer_rows, param_totals
from snipit_cli.models.arch import ArchSpec, build_model
from snipit_cli.models.storage import dense_nbytes

#: Bumped on any change of a key's name, place or meaning (2: the unified vocabulary, see CHANGELOG).
SCHEMA_VERSION = 2

HEADER = ("schema_version", "snipit_version", "command")

#: Top-level keys of each command's document, in order.
COMMANDS: dict[str, tuple[str, ...]] = {
    "prune": (*HEADER, "model", "pruning", "sparsity", "params", "nodes", "macs", "layers", "connectivity",
              "storage", "file", "folder", "report_file", "training", "run", "notes"),
    "train": (*HEADER, "model", "pruning", "sparsity", "params", "nodes", "macs", "layers", "connectivity",
              "storage", "file", "folder", "state_file", "training", "run", "notes"),
    "report": (*HEADER, "model", "pruning", "sparsity", "params", "nodes", "macs", "layers", "connectivity",
               "storage", "file", "eval", "latency", "run", "notes"),
    "compare": (*HEADER, "models", "ratios", "notes"),
    "convert": (*HEADER, "source_file", "file", "storage", "tensors", "encoded_tensors", "size_ratio",
                "notes"),
    "methods": (*HEADER, "methods"),
    "export": (*HEADER, "model", "file", "onnx", "parity", "latency", "run", "notes"),
}  # fmt: skip

#: Keys of each block (``None``-valued blocks have none). Optional keys are in OPTIONAL.
BLOCKS: dict[str, tuple[str, ...]] = {
    "model": ("source", "arch", "input_size", "input_size_from", "mean", "std", "num_classes", "pretrained"),
    "pruning": ("method", "structured", "schedule", "exclude", "seed", "min_keep", "round_to", "collapse",
                "calibration", "recalibration", "equivalence", "limits", "latency"),
    "sparsity": ("target", "achieved", "of", "weights", "nodes"),
    "params": ("total", "nonzero", "prunable", "prunable_nonzero", "dense"),
    "nodes": ("dense", "remaining"),
    "macs": ("dense", "remaining", "removed"),
    "layers[]": ("name", "type", "shape", "dense_shape", "params", "nonzero", "sparsity", "prunable",
                 "tied_to", "macs"),
    "connectivity": ("units", "no_incoming", "unused_inputs", "layers_cut", "path", "layers"),
    "storage": ("format", "encoding"),
    "file": ("path", "size", "bytes_per_param", "dense_size", "to_dense"),
    "source_file": ("path", "size"),
    "run": ("device", "seconds"),
    "onnx": ("opset", "input", "output", "dynamic_batch", "exporter", "versions"),
    "parity": ("max_abs_diff", "max_rel_diff", "by_batch", "tolerance", "runtime"),
    "ratios[]": ("source", "params", "nonzero", "macs", "file_size", "bytes_per_param", "speedup",
                 "top1_change"),
}  # fmt: skip

#: Keys a block has only in some documents: the pruning record of the mode that wrote it, the
#: shapes of a slim model, tied weights, ratios that need --latency / --eval.
OPTIONAL: dict[str, frozenset[str]] = {
    "pruning": frozenset(
        {
            "min_keep",
            "round_to",
            "collapse",
            "equivalence",
            "limits",
            "calibration",
            "recalibration",
            "latency",
        }
    ),
    "layers[]": frozenset({"dense_shape", "tied_to", "macs"}),
    "ratios[]": frozenset({"speedup", "top1_change"}),
}

#: The pruning record's keys as the checkpoint metadata holds them (top level there).
_PRUNING_RECORD = ("method", "structured", "schedule", "exclude", "seed", "min_keep", "round_to", "collapse",
                   "calibration", "recalibration")  # fmt: skip


def header(command: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "snipit_version": snipit_cli.__version__, "command": command}


def ordered(command: str, blocks: Mapping[str, Any]) -> dict[str, Any]:
    """The document of ``command``: its header, then exactly its keys in their order (a missing
    block is ``None``; a key that is not the command's is a bug, refused here)."""
    keys = COMMANDS[command]
    extra = set(blocks) - set(keys)
    if extra:
        raise KeyError(f"{command} documents have no key(s) {sorted(extra)}")
    doc = header(command)
    doc.update({key: blocks.get(key) for key in keys if key not in HEADER})
    return doc


def pruning_block(metadata: Mapping[str, Any] | None, **run: Any) -> dict[str, Any] | None:
    """How a model was pruned, from its metadata document (None for an unpruned model), plus the
    facts only the run knows (``equivalence``, ``limits``)."""
    metadata = metadata or {}
    if "method" not in metadata:
        return None
    block = {key: metadata[key] for key in _PRUNING_RECORD if key in metadata}
    block.update({key: value for key, value in run.items() if value is not None})
    return block


def sparsity_block(
    metadata: Mapping[str, Any] | None, params: Mapping[str, int], nodes: float | None
) -> dict[str, Any]:
    """The asked-for and achieved fraction (of weights, nodes, params or MACs; None when the model
    was not pruned by snipit) beside the measured weight and node sparsity."""
    recorded = (metadata or {}).get("sparsity") or {}
    prunable = params["prunable"]
    return {
        "target": recorded.get("target"),
        "achieved": recorded.get("achieved"),
        "of": recorded.get("of"),
        "weights": (prunable - params["prunable_nonzero"]) / prunable if prunable else 0.0,
        "nodes": nodes,
    }


def params_block(totals: Mapping[str, int]) -> dict[str, Any]:
    """Parameter totals (tied tensors once); ``dense`` is the dense model's total for a slim model."""
    return {
        "total": totals["total"],
        "nonzero": totals["nonzero"],
        "prunable": totals["prunable"],
        "prunable_nonzero": totals["prunable_nonzero"],
        "dense": totals.get("dense"),
    }


def nodes_block(dense: int | None, remaining: int | None) -> dict[str, int] | None:
    """Units (channels, neurons, heads) of the pruned groups before and after; None unless slim."""
    if dense is None or remaining is None:
        return None
    return {"dense": dense, "remaining": remaining}


def node_sparsity(nodes: Mapping[str, int] | None) -> float | None:
    if not nodes or not nodes["dense"]:
        return None
    return 1 - nodes["remaining"] / nodes["dense"]


def macs_block(dense: int, remaining: int) -> dict[str, Any]:
    """MACs of one forward pass of the dense and the pruned model (equal unless slim: dense kernels
    do not skip zero weights) and the fraction removed."""
    return {"dense": dense, "remaining": remaining, "removed": 1 - remaining / dense if dense else 0.0}


def layers_block(rows: Sequence[Mapping[str, Any]], macs: Mapping[str, int] | None = None) -> list[dict]:
    """Per-layer rows (``metrics.sparsity.layer_rows``) with each layer's MACs when counted."""
    if macs is None:
        return [dict(row) for row in rows]
    return [{**row, "macs": macs.get(row["name"], 0)} for row in rows]


def connectivity_block(measured: Connectivity) -> dict[str, Any]:
    """Disconnection totals over the Conv/Linear layers (``metrics.connectivity``), whether the
    output still depends on the input (``path``, None when the check could not run), and the rows
    of the layers with any unit cut off (none for a healthy model, so the document stays small)."""
    return {
        "units": measured.units,
        "no_incoming": measured.no_incoming,
        "unused_inputs": measured.unused_inputs,
        "layers_cut": measured.layers_cut,
        "path": measured.path,
        "layers": [
            {"name": r.name, "units": r.units, "no_incoming": r.no_incoming, "unused_inputs": r.unused_inputs}
            for r in measured.layers
            if r.no_incoming or r.unused_inputs
        ],
    }


def connectivity_notes(block: Mapping[str, Any] | None, pruning: Mapping[str, Any] | None) -> list[str]:
    """The remark for a model whose output no longer depends on its input, with the way out (the
    collapse guard only where the run that pruned it turned the guard off)."""
    if not block or block["path"] is not False:
        return []
    cut = [r["name"] for r in block["layers"] if r["units"] and r["no_incoming"] == r["units"]]
    more = f" and {len(cut) - 5} more" if len(cut) > 5 else ""
    if not cut:
        where = "the weights kept in successive layers do not connect; see connectivity.layers"
    elif len(cut) == 1:
        where = f"layer {cut[0]} has no weights left"
    else:
        where = f"layers {', '.join(cut[:5])}{more} have no weights left"
    guard_off = ((pruning or {}).get("collapse") or {}).get("guard") is False
    way_out = "prune less (--sparsity)" + (
        " or keep the collapse guard (no --allow-collapse)" if guard_off else ""
    )
    problem = "no input-to-output path survives: the output no longer depends on the input"
    return [f"{problem} ({where}); {way_out}"]


def storage_block(encoding: str | None, requested: str | None = None) -> dict[str, str] | None:
    """How the checkpoint's tensors are stored: ``format`` as ``--storage`` names it (what the run
    wrote with; for a file read back, what its encoding is), ``encoding`` as the file records it
    (``--storage sparse`` of a model without mostly-zero tensors encodes none: ``dense``); None
    for a model that is not a file."""
    if encoding is None:
        return None
    return {"format": requested or ("dense" if encoding == "dense" else "sparse"), "encoding": encoding}


def file_block(
    path: Path | str | None, size: int | None, params: int, dense_size: int
) -> dict[str, Any] | None:
    """The checkpoint file: its size, bytes per parameter, and against its tensors stored densely
    (sparse storage shows as ``to_dense`` well below 1)."""
    if path is None:
        return None
    return {
        "path": str(path),
        "size": size,
        "bytes_per_param": size / params if size is not None and params else None,
        "dense_size": dense_size,
        "to_dense": size / dense_size if size is not None and dense_size else None,
    }


def source_file_block(path: Path | str) -> dict[str, Any]:
    return {"path": str(path), "size": Path(path).stat().st_size}


def run_block(device: str, seconds: float) -> dict[str, Any]:
    return {"device": device, "seconds": round(seconds, 3)}


def ratios_block(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """How many times fewer params/nonzeros/MACs/bytes (baseline ÷ model), how many times faster
    (baseline latency ÷ model latency, with --latency), and the top-1 change (with --eval)."""

    def fewer(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    def file_figure(doc: Mapping[str, Any], key: str) -> float | None:
        return (doc["file"] or {}).get(key)

    out: dict[str, Any] = {
        "source": other["model"]["source"],
        "params": fewer(base["params"]["total"], other["params"]["total"]),
        "nonzero": fewer(base["params"]["nonzero"], other["params"]["nonzero"]),
        "macs": fewer(base["macs"]["remaining"], other["macs"]["remaining"]),
        "file_size": fewer(file_figure(base, "size"), file_figure(other, "size")),
        "bytes_per_param": fewer(file_figure(base, "bytes_per_param"), file_figure(other, "bytes_per_param")),
    }
    if base.get("latency") and other.get("latency"):
        out["speedup"] = {
            bs: base["latency"]["batch_sizes"][bs]["median_ms"] / t["median_ms"]
            for bs, t in other["latency"]["batch_sizes"].items()
            if bs in base["latency"]["batch_sizes"]
        }
    if base.get("eval") and other.get("eval") and base["eval"]["top1"] is not None:
        out["top1_change"] = other["eval"]["top1"] - base["eval"]["top1"]
    return out


def nested(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A report inside ``compare``'s ``models`` list: without the header the outer document has."""
    return {k: v for k, v in doc.items() if k not in HEADER}


def measured_blocks(
    model: nn.Module,
    *,
    metadata: Mapping[str, Any] | None,
    input_size: Sequence[int],
    exclude: Sequence[str] = (),
    dense: nn.Module | None = None,
    dense_macs: int | None = None,
    file: tuple[Path | str, int | None, str | None] | None = None,
    storage: str | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """The blocks prune, train and report measure alike on a model and its metadata document:
    ``pruning``, ``sparsity``, ``params``, ``nodes``, ``macs``, ``layers``, ``connectivity``,
    ``storage``, ``file``.

    ``dense`` is the dense original of a slim model (for dense shapes, params and MACs);
    ``storage`` is the ``--storage`` the run wrote it with. ``file`` is (path, size in bytes,
    storage encoding) of the checkpoint, when there is one (size
    and encoding None when this process cannot see it: another rank's node).
    """
    rows = layer_rows(model, exclude, dense=dense)
    totals = param_totals(model, rows, dense=dense)
    macs = macs_by_module(model, tuple(input_size), device)
    if dense_macs is None:  # the structured pass counted them already; else count them here
        dense_macs = count_macs(dense, tuple(input_size), device) if dense is not None else macs[""]
    nodes = _nodes(metadata or {}, rows)
    recorded = (metadata or {}).get("nodes") or {}
    path, size, encoding = file if file is not None else (None, None, None)
    return {
        "pruning": pruning_block(metadata),
        "sparsity": sparsity_block(metadata, totals, recorded.get("sparsity", node_sparsity(nodes))),
        "params": params_block(totals),
        "nodes": nodes,
        "macs": macs_block(dense_macs, macs[""]),
        "layers": layers_block(rows, macs),
        "connectivity": connectivity_block(connectivity(model, tuple(input_size), device)),
        "storage": storage_block(encoding, storage),
        "file": file_block(path, size, totals["total"], dense_nbytes(model.state_dict())),
    }


def _nodes(metadata: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """Units of the pruned groups: as the pruning run recorded them, else (a model slimmed while
    training) the output channels of the prunable layers against their dense shapes."""
    recorded = metadata.get("nodes")
    if recorded:
        return nodes_block(recorded["dense"], recorded["remaining"])
    if not any("dense_shape" in r for r in rows):
        return None
    prunable = [r for r in rows if r["prunable"] and "dense_shape" in r]
    return nodes_block(sum(r["dense_shape"][0] for r in prunable), sum(r["shape"][0] for r in prunable))


def dense_reference(arch: ArchSpec | None, metadata: Mapping[str, Any] | None, *, confirmed: bool):
    """The dense architecture behind a slim checkpoint, for dense shapes (None otherwise); built
    as the checkpoint was loaded: from the metadata alone, or as the user's ``--arch``."""
    if not (metadata or {}).get("slim") or arch is None:
        return None
    with torch.random.fork_rng():
        return build_model(arch, from_checkpoint=not confirmed)
