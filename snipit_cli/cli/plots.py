"""``--plot``: per-layer sparsity or kept channels, and accuracy/MACs against latency.

matplotlib is an optional extra (``pip install 'snipit-cli[plot]'``); without it ``--plot`` is a
clear error, and nothing else needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snipit_cli.errors import UsageError
from snipit_cli.fileio import check_writable, write_atomic


def check_plot_path(path: Path, force: bool, inputs: tuple[Path, ...]) -> None:
    """Before any work: a PNG name, in a folder that exists, not an existing file without
    --force, never one of the models being described."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot writes PNG files; use a name ending in .png, not {path.name}")
    check_writable(path, force, inputs, option="--plot")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'snipit-cli[plot]'") from None
    return plt


def plot_layers(doc: dict[str, Any], path: Path) -> None:
    """Bar per layer: kept fraction of output channels for slim models, else weight sparsity."""
    plt = _pyplot()
    layers = doc["layers"]
    slim = any("dense_shape" in r for r in layers)
    values = [r["shape"][0] / r["dense_shape"][0] if slim else r["sparsity"] for r in layers]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(layers)), 4))
    ax.bar(range(len(layers)), values, color="tab:blue")
    ax.set_xticks(range(len(layers)), [r["name"] for r in layers], rotation=90, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("kept output channels (fraction)" if slim else "weight sparsity")
    ax.set_title(doc["model"]["source"])
    fig.tight_layout()
    _save(fig, plt, path)


def plot_compare(doc: dict[str, Any], path: Path) -> None:
    """One point per model: accuracy (or MACs) against median latency at the first batch size."""
    plt = _pyplot()
    models = doc["models"]
    if not all(m["latency"] for m in models):
        raise UsageError("compare --plot draws against latency: add --latency")
    bs = next(iter(models[0]["latency"]["batch_sizes"]))
    xs = [m["latency"]["batch_sizes"][bs]["median_ms"] for m in models]
    with_acc = all(m["eval"] for m in models)
    ys = [m["eval"]["top1"] if with_acc else m["macs"]["remaining"] for m in models]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, ys)
    for x, y, m in zip(xs, ys, models, strict=True):
        ax.annotate(m["model"]["source"], (x, y), fontsize=7)
    ax.set_xlabel(f"median latency, batch {bs} (ms)")
    ax.set_ylabel("top-1 accuracy" if with_acc else "MACs")
    fig.tight_layout()
    _save(fig, plt, path)


def _save(fig, plt, path: Path) -> None:
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
