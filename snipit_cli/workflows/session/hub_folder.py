"""A hub-style output folder (``-o DIR/``, ``--format hf``): the files besides the checkpoint.

``DIR/model.safetensors`` is the checkpoint as a file output writes it; ``config.json`` says what
timm needs to rebuild it (:mod:`snipit_cli.models.hub_config`); ``README.md`` is a model card
holding the pruning report (method, sparsity, MACs, params, accuracy when measured, the command)
and the lines that load the folder. The card is rendered by timm's ``generate_readme``, the one
``push_to_hf_hub`` uses, so the front matter is what the Hub expects of a timm model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

import snipit_cli
from snipit_cli.fileio import Folder, write_atomic
from snipit_cli.models.arch import ArchSpec
from snipit_cli.models.hub_config import FOLDER_CHECKPOINT as CHECKPOINT
from snipit_cli.models.hub_config import write_hub_config

REPORT = "report.json"

CITATION = """@article{verdenius2020pruning,
  title={Pruning via Iterative Ranking of Sensitivity Statistics},
  author={Verdenius, Stijn and Stol, Maarten and Forr{\\'e}, Patrick},
  journal={arXiv preprint arXiv:2006.00896},
  year={2020}
}"""


def folder_writer(
    files: dict[str, Callable[[Path], None]],
    *,
    model: nn.Module,
    arch: ArchSpec | None,
    report: Callable[[], dict[str, Any]],
    folder: Path,
    command: str | None,
) -> Folder:
    """The writer of the whole folder: ``files`` (the checkpoint, the report when it lives here)
    first, then ``config.json`` and the card, which read the report those wrote."""

    def config(path: Path) -> None:
        document = report()
        write_hub_config(path, model, arch, document["model"], snipit_block(document))

    def card(path: Path) -> None:
        path.write_text(model_card(report(), folder, arch, command), encoding="utf-8")

    return Folder({**files, "config.json": config, "README.md": card})


def rewrite_card(folder: Path, report: dict[str, Any], arch: ArchSpec | None, command: str | None) -> None:
    """Replace the folder's card after its checkpoint changed (``--finetune-epochs``)."""
    text = model_card(report, folder, arch, command)
    write_atomic(folder / "README.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def snipit_block(report: dict[str, Any]) -> dict[str, Any]:
    """``config.json``'s ``snipit`` block: how the weights were made and what loads them."""
    pruning = report.get("pruning") or {}
    slim = bool(pruning.get("structured"))
    return {
        "version": snipit_cli.__version__,
        "method": pruning.get("method"),
        "structured": slim,
        "sparsity": report.get("sparsity"),
        "source": report["model"]["source"],
        "loads_with": "snipit_cli.load_model"
        if _snipit_only(report)
        else "timm.create_model / load_state_dict",
    }


def _snipit_only(report: dict[str, Any]) -> bool:
    """Only snipit rebuilds a slim model (other shapes than the library's) or reads the sparse
    archive encoding; everything else loads with the library and plain safetensors."""
    sparse = ((report.get("storage") or {}).get("format")) == "sparse"
    return bool((report.get("pruning") or {}).get("structured")) or sparse


def model_card(report: dict[str, Any], folder: Path, arch: ArchSpec | None, command: str | None) -> str:
    """The folder's README.md: the pruning report as a timm model card."""
    from timm.models._hub import generate_readme

    snipit_only = _snipit_only(report)
    is_timm = arch is not None and arch.kind == "timm"
    card = {
        "tags": ["image-classification", "timm" if is_timm else "pytorch", "pruned", "snipit"],
        "library_name": "timm" if is_timm and not snipit_only else "pytorch",
        "description": _description(report, snipit_only),
        "details": _details(report, command),
        "usage": _usage(folder.name, arch, report, snipit_only),
        "citation": CITATION,
    }
    return generate_readme(card, folder.name)


def _description(report: dict[str, Any], snipit_only: bool) -> str:
    if (report.get("pruning") or {}).get("structured"):
        what = "channels and neurons physically removed (SNAP-it, structured): a smaller, faster model"
    elif snipit_only:
        what = "stored in snipit's sparse archive encoding (bit mask + kept values), which snipit reads"
    else:
        what = (
            "pruned weights stored as exact zeros in the dense layout, so every safetensors reader loads it"
        )
    return f"`{report['model']['source']}` pruned with [snipit](https://arxiv.org/abs/2006.00896): {what}."


def _details(report: dict[str, Any], command: str | None) -> dict[str, Any]:
    pruning, sparsity, params, macs = (report.get(k) or {} for k in ("pruning", "sparsity", "params", "macs"))
    model = report["model"]
    details: dict[str, Any] = {
        "Source model": f"`{model['source']}`" + (" (pretrained)" if model.get("pretrained") else ""),
        "Pruning method": pruning.get("method"),
        "Sparsity": (
            f"{sparsity.get('achieved', 0):.4f} of {sparsity.get('of')} (target {sparsity.get('target')})"
        ),
        "Params (M)": _millions(params.get("total"), params.get("dense")),
        "Non-zero params (M)": _millions(params.get("nonzero"), None),
        "MACs (M)": _millions(macs.get("remaining"), macs.get("dense")),
        "Image size": "x".join(str(d) for d in model["input_size"]),
        "Classes": model["num_classes"],
    }
    calibration = pruning.get("calibration") or {}
    if calibration.get("data"):
        details["Calibration data"] = (
            f"{calibration['data']} ({calibration.get('batches')} batches of {calibration.get('batch_size')})"
        )
    accuracy = _accuracy(report)
    if accuracy:
        details["Accuracy"] = accuracy
    if command:
        details["Command"] = f"`{command}`"
    details["Written by"] = f"snipit {snipit_cli.__version__}"
    return {k: v for k, v in details.items() if v is not None}


def _millions(value: int | None, dense: int | None) -> str | None:
    if value is None:
        return None
    text = f"{value / 1e6:.3f}"
    return f"{text} (dense: {dense / 1e6:.3f})" if dense else text


def _accuracy(report: dict[str, Any]) -> str | None:
    """Test accuracy of the last epoch, when the run fine-tuned and evaluated."""
    history = (report.get("training") or {}).get("history") or []
    last = history[-1] if history else {}
    if last.get("test_top1") is None:
        return None
    data = (report.get("training") or {}).get("data") or {}
    where = data.get("test_data") or data.get("data")
    top5 = f", top-5 {last['test_top5']:.4f}" if last.get("test_top5") is not None else ""
    return f"top-1 {last['test_top1']:.4f}{top5} on {where} ({data.get('test_split') or 'test'})"


def _usage(name: str, arch: ArchSpec | None, report: dict[str, Any], snipit_only: bool) -> str:
    if snipit_only:
        code = f'import snipit_cli\n\nmodel = snipit_cli.load_model("{name}")  # rebuilt by snipit'
    elif arch is not None and arch.kind == "timm":
        code = f'import timm\n\nmodel = timm.create_model("local-dir:{name}", pretrained=True)'
    elif arch is not None and arch.kind == "torchvision":
        kwargs = {**arch.kwargs, "num_classes": report["model"]["num_classes"]}
        args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
        code = (
            "import torchvision\nfrom safetensors.torch import load_file\n\n"
            f'model = torchvision.models.get_model("{arch.name}"{args})\n'
            f'model.load_state_dict(load_file("{name}/{CHECKPOINT}"))'
        )
    else:
        code = f'import snipit_cli\n\nmodel = snipit_cli.load_model("{name}")'
    return f"```python\n{code}\nmodel.eval()\n```\n"
