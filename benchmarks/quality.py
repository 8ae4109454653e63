"""Pruning quality on real MNIST and CIFAR-10: the paper's comparison (SNIP-it vs SNIP, GraSP,
SynFlow, ...).

Run by hand (not in the test suite except ``--quick``):

    python benchmarks/quality.py --data-root ../shared/data/mnist            # full, < 90 min on 2 cores
    python benchmarks/quality.py --data-root ../shared/data/mnist --quick    # pipeline check, < 5 min
    python benchmarks/quality.py --dataset cifar10 --data-root ../shared/data  # about an hour

The CIFAR-10 panels (at initialisation, trained checkpoint with and without BatchNorm
recalibration, disconnection) are described in ``quality_cifar10.py``.

Data: ``../shared/data/mnist`` holds only the official MNIST *test* set (10,000 images). Every
run splits it with seed 0 into 8,000 training and 2,000 test images (``snipit train --split test
--holdout 0.2``) and reports accuracy on those 2,000. Every run goes through ``run_train``, the
library call behind ``snipit train``: pruning before training is ``--prune-delay 0 --prune-freq 0``
(all schedule steps at initialisation, on training batches), then the same training budget for
every criterion. Runs are spread over worker processes with one thread each.

Writes ``benchmarks/results/quality{,-quick}.md``, ``.json`` (every run) and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import quality_cifar10 as cifar

RESULTS = Path(__file__).parent / "results"
UNSTRUCTURED = ("random", "magnitude", "snip", "snip-it", "grasp", "synflow")
STRUCTURED = ("random", "l1", "snap", "snap-it")


@dataclass(frozen=True)
class Run:
    """One training run: a network, a criterion at a sparsity, when it is pruned, a seed."""

    net: str
    method: str
    sparsity: float
    when: str  # "init" (before training) or "during"
    structured: bool
    seed: int
    epochs: int
    target: str = "weights"  # what the sparsity counts: weights, or nodes/macs for structured runs


SECTIONS = ("unstructured", "during", "structured", "structured-macs")


def of(row: dict) -> str:
    """What a row's sparsity counts (rows of older runs lack ``target``)."""
    return row.get("target") or ("nodes" if row["structured"] else "weights")


def plan(quick: bool, sections: tuple[str, ...] = SECTIONS) -> list[Run]:
    seeds = (0,) if quick else (0, 1, 2)
    runs: list[Run] = []
    nets = ("lenet300-100",) if quick else ("lenet300-100", "lenet5-caffe")
    levels = (0.9, 0.99) if quick else (0.9, 0.95, 0.98, 0.99, 0.995)
    for net in nets:
        epochs = EPOCHS[quick][net]
        if "unstructured" in sections:
            for sparsity in levels:
                for method in UNSTRUCTURED:
                    runs += [Run(net, method, sparsity, "init", False, s, epochs) for s in seeds]
        if "during" in sections:
            for sparsity in (0.98,) if quick else (0.98, 0.99):
                runs += [Run(net, "snip-it", sparsity, "during", False, s, epochs) for s in seeds]
    cnn_epochs = EPOCHS[quick]["small-cnn"]
    for section, target in (("structured", "nodes"), ("structured-macs", "macs")):
        if section not in sections or (quick and target == "macs"):
            continue
        for sparsity in (0.5,) if quick else (0.5, 0.7, 0.9):
            for method in STRUCTURED:
                runs += [
                    Run("small-cnn", method, sparsity, "init", True, s, cnn_epochs, target) for s in seeds
                ]
    return runs


EPOCHS = {
    False: {"lenet300-100": 10, "lenet5-caffe": 6, "small-cnn": 8},
    True: {"lenet300-100": 2, "lenet5-caffe": 2, "small-cnn": 1},
}
SMALL_CNN_WIDTH = 8


def execute(run: Run, data_root: str) -> dict:
    """One run in a worker process: train (pruning at init or during) and read the final accuracy."""
    import torch

    torch.set_num_threads(1)
    from snipit_cli.data.build import DataOptions
    from snipit_cli.data.specs import parse_data_spec
    from snipit_cli.metrics.macs import count_macs
    from snipit_cli.pruning.structured.options import StructuredOptions
    from snipit_cli.training.optim import OptimizerOptions
    from snipit_cli.workflows.prune import ModelOptions
    from snipit_cli.workflows.train import PruneWhileTraining, TrainRequest, run_train

    during = run.when == "during"
    # During training (Algorithm 1): the SNIP-it steps one epoch apart from epoch 1; S=3 keeps
    # the 5 steps inside the shortest budget.
    prune = PruneWhileTraining(
        method=run.method,
        sparsity=run.sparsity,
        delay=1 if during else 0,
        freq=1 if during and run.epochs >= 6 else 0,  # --quick: all steps at epoch 1
        steps=3 if during else None,
        structured=StructuredOptions(target=run.target) if run.structured else None,
        batches=5,
        allow_collapse=True,  # the criteria as published: the ranking alone decides, layers may empty
    )
    kwargs = {"width": SMALL_CNN_WIDTH} if run.net == "small-cnn" else None
    with tempfile.TemporaryDirectory() as tmp:
        request = TrainRequest(
            model=ModelOptions(f"snipit:{run.net}", arch_kwargs=kwargs),
            data=DataOptions(
                parse_data_spec("mnist"), Path(data_root), split="test", batch_size=100, batches=5
            ),
            epochs=run.epochs,
            optimizer=OptimizerOptions("sgd", lr=0.05),
            holdout=0.2,
            prune=prune,
            seed=run.seed,
            device="cpu",
            output=Path(tmp) / "model.safetensors",
            checkpoint_every=0,
        )
        started = time.perf_counter()
        outcome = run_train(request)
        seconds = time.perf_counter() - started
    report, model = outcome.report, outcome.model
    last = report["training"]["history"][-1]
    return {
        **run.__dict__,
        "top1": last["test_top1"],
        "test_loss": last["test_loss"],
        "achieved": report["sparsity"]["achieved"],
        "params_nonzero": report["params"]["nonzero"],
        "params_total": report["params"]["total"],
        "macs": count_macs(model, (1, 28, 28)),
        "seconds": round(seconds, 2),
        "train_samples": report["training"]["data"]["train_samples"],
        "test_samples": report["training"]["data"]["test_samples"],
    }


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["net"], of(r), r["when"], r["method"], r["sparsity"]), []).append(r)
    out = []
    for (net, target, when, method, sparsity), rs in groups.items():
        acc = [r["top1"] for r in rs]
        out.append(
            {
                "net": net,
                "of": target,
                "when": when,
                "method": method,
                "sparsity": sparsity,
                "top1_mean": statistics.fmean(acc),
                "top1_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "seeds": len(rs),
                "params_nonzero": statistics.fmean(r["params_nonzero"] for r in rs),
                "macs": statistics.fmean(r["macs"] for r in rs),
                "seconds": statistics.median(r["seconds"] for r in rs),
            }
        )
    return out


def markdown(summary: list[dict], meta: dict) -> str:
    lines = [
        "# Pruning quality on real MNIST",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; torch {meta['torch']}; {meta['workers']} worker processes × 1 thread; "
        f"wall time {meta['wall_minutes']:.1f} min.  ",
        f"Data: {meta['data']}  ",
        f"Seeds: {meta['seeds']} (model init, pruning randomness); the data split is fixed (seed 0).  ",
        f"Training: {meta['training']}",
        "",
        "Top-1 accuracy on the 2,000 held-out images, mean ± std over seeds; params = nonzero parameters "
        "(structured: remaining); MACs per image of the saved model (unstructured zeros still count); "
        "seconds = median wall time of one run (pruning + training + evaluation).",
        "",
    ]
    order = {m: i for i, m in enumerate((*UNSTRUCTURED, *STRUCTURED))}
    for net, target in dict.fromkeys((s["net"], s["of"]) for s in summary):
        rows = [s for s in summary if s["net"] == net and s["of"] == target]
        title = f"## {net} — {PANEL_TITLES[target]}"
        lines += [
            title,
            "",
            "| when | method | sparsity | top-1 | params | MACs | s/run |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in sorted(rows, key=lambda s: (s["when"] != "init", s["sparsity"], order.get(s["method"], 99))):
            lines.append(
                f"| {s['when']} | {s['method']} | {s['sparsity']} | {100 * s['top1_mean']:.2f} ± "
                f"{100 * s['top1_std']:.2f} | {s['params_nonzero']:,.0f} | {s['macs']:,.0f} | "
                f"{s['seconds']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


PANEL_TITLES = {
    "weights": "unstructured (weight sparsity)",
    "nodes": "structured, equal node sparsity",
    "macs": "structured, equal MACs removed (--target macs)",
}


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((s["net"], s["of"]) for s in summary))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (net, target) in zip(axes[0], panels, strict=True):
        rows = [s for s in summary if s["net"] == net and s["of"] == target]
        levels = sorted({s["sparsity"] for s in rows})  # evenly spaced, labelled by level
        for key in dict.fromkeys((s["method"], s["when"]) for s in rows):
            pts = sorted(
                (s["sparsity"], s["top1_mean"], s["top1_std"])
                for s in rows
                if (s["method"], s["when"]) == key
            )
            label = key[0] if key[1] == "init" else f"{key[0]} (during training)"
            ax.errorbar(
                [levels.index(p[0]) for p in pts], [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts],
                marker="o", capsize=3, label=label, linestyle="--" if key[1] == "during" else "-",
            )  # fmt: skip
        ax.set_xticks(range(len(levels)), [str(level) for level in levels])
        ax.set_title(f"{net}: {PANEL_TITLES[target]}", fontsize=9)
        ax.set_xlabel(f"fraction of {target} removed")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    parser.add_argument(
        "--data-root",
        help="MNIST: the folder with MNIST/raw; CIFAR-10: the folder holding cifar10-train-jpg and "
        "cifar10-test-jpg [default: ../shared/data/mnist, ../shared/data]",
    )
    parser.add_argument("--quick", action="store_true", help="a few runs that check the pipeline (< 5 min)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", default="0", help="CIFAR-10 at-init panel: comma-separated seeds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results files")
    parser.add_argument(
        "--sections",
        help=f"comma-separated, of {SECTIONS} (MNIST) or {cifar.PANELS} (CIFAR-10) [default: all]",
    )
    parser.add_argument(
        "--append", action="store_true", help="add these runs to the results already in --out"
    )
    parser.add_argument("--replot", action="store_true", help="only redraw the table and plot from the JSON")
    args = parser.parse_args(argv)
    shared = Path(__file__).parents[1] / ".." / "shared" / "data"
    if args.dataset == "cifar10":
        args.data_root = args.data_root or str(shared)
        return run_cifar10(args, argv)
    args.data_root = args.data_root or str(shared / "mnist")
    args.sections = args.sections or ",".join(SECTIONS)
    if args.replot:
        stem = "quality-quick" if args.quick else "quality"
        doc = json.loads((args.out / f"{stem}.json").read_text())
        write_outputs(args.out, stem, doc["meta"], doc["runs"])
        return 0

    runs = plan(args.quick, tuple(args.sections.split(",")))
    started = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(execute, run, args.data_root) for run in runs]
        for i, future in enumerate(futures, 1):
            rows.append(future.result())
            r = rows[-1]
            print(
                f"[{i}/{len(runs)}] {r['net']} {r['method']} {r['when']} s={r['sparsity']} seed={r['seed']}: "
                f"top-1 {r['top1']:.4f} ({r['seconds']:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    import torch

    wall = (time.perf_counter() - started) / 60
    meta = {
        "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "torch": torch.__version__,
        "workers": args.workers,
        "wall_minutes": wall,
        "data": f"MNIST test set from {args.data_root} (10,000 images), split with seed 0 into "
        f"{rows[0]['train_samples']:,} train / {rows[0]['test_samples']:,} test",
        "seeds": sorted({r["seed"] for r in rows}),
        "training": "SGD momentum 0.9, lr 0.05 cosine, weight decay 5e-4, batch 100; epochs "
        + ", ".join(f"{k} {v}" for k, v in EPOCHS[args.quick].items())
        + "; calibration 5 batches of 100 training images per pruning step; "
        f"small-cnn width {SMALL_CNN_WIDTH}; layer collapse allowed (--allow-collapse, as the "
        "papers prune); during training: snip-it with S=3 (5 steps) at epochs 1..5",
    }
    stem = "quality-quick" if args.quick else "quality"
    if args.append:
        earlier = json.loads((args.out / f"{stem}.json").read_text())
        rows = earlier["runs"] + rows
        meta["command"] = f"{earlier['meta']['command']}; then {meta['command']}"
        meta["wall_minutes"] += earlier["meta"]["wall_minutes"]
    write_outputs(args.out, stem, meta, rows)
    return 0


def write_outputs(out: Path, stem: str, meta: dict, rows: list[dict]) -> None:
    summary = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": rows, "summary": summary}, indent=1))
    plot(summary, out / f"{stem}.png")
    write_markdown(out, stem)


def write_markdown(out: Path, stem: str) -> None:
    """``quality.md``: the MNIST panels, then the CIFAR-10 ones (each from its own JSON)."""
    parts = []
    mnist = out / f"{stem}.json"
    if mnist.is_file():
        doc = json.loads(mnist.read_text())
        parts.append(markdown(doc["summary"], doc["meta"]) + f"\n![accuracy vs sparsity]({stem}.png)\n")
    cifar_json = out / f"{stem}-cifar10.json"
    if cifar_json.is_file():
        doc = json.loads(cifar_json.read_text())
        parts.append(
            "\n".join(cifar.markdown(doc["summary"], doc["meta"]))
            + f"\n![CIFAR-10 panels]({stem}-cifar10.png)\n"
        )
    (out / f"{stem}.md").write_text("\n".join(parts))
    print(out / f"{stem}.md")


def run_cifar10(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The CIFAR-10 panels: each adds its runs (and its command and wall time) to the JSON."""
    import torch

    root = Path(args.data_root)
    train_root, test_root = root / "cifar10-train-jpg", root / "cifar10-test-jpg"
    panels = tuple((args.sections or ",".join(cifar.PANELS)).split(","))
    unknown = set(panels) - set(cifar.PANELS)
    if unknown:
        raise SystemExit(f"unknown --sections {sorted(unknown)}; CIFAR-10 has {cifar.PANELS}")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    stem = "quality-quick" if args.quick else "quality"
    path = args.out / f"{stem}-cifar10.json"
    doc = (
        json.loads(path.read_text())
        if args.append and path.is_file()
        else {"meta": {"panels": {}}, "runs": []}
    )
    setting = cifar.SETTING[args.quick]
    command = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        subset = cifar.balanced_subset(train_root, setting.per_class, Path(tmp) / "subset")
        for panel in panels:
            started = time.perf_counter()
            trained = None
            runs = cifar.plan(args.quick, (panel,), seeds)
            if panel in ("trained", "latency"):
                trained = Path(tmp) / "dense.safetensors"
                torch.set_num_threads(args.workers)
                if not trained.is_file():
                    cifar.train_dense(subset, trained, args.quick)
                runs = (
                    cifar.trained_plan(args.quick) if panel == "trained" else cifar.latency_plan(args.quick)
                )
            rows = _pool(
                args.workers,
                runs,
                cifar.execute,
                str(subset),
                str(test_root),
                args.quick,
                str(trained) if trained else None,
            )
            done = {r["seed"] for r in rows}  # a rerun replaces those seeds' runs; other seeds stay
            kept = [r for r in doc["runs"] if r["panel"] == panel and r["seed"] not in done]
            doc["runs"] = [r for r in doc["runs"] if r["panel"] != panel] + kept + rows
            earlier = doc["meta"]["panels"].get(panel) if kept else None
            wall = (time.perf_counter() - started) / 60
            doc["meta"]["panels"][panel] = {
                "command": f"{earlier['command']}; then {command}" if earlier else command,
                "wall_minutes": wall + (earlier["wall_minutes"] if earlier else 0.0),
                "setting": _setting_text(
                    panel,
                    setting,
                    train_root,
                    test_root,
                    sorted({r["seed"] for r in doc["runs"] if r["panel"] == panel}),
                ),
            }
    doc["meta"].update(
        workers=args.workers,
        torch=torch.__version__,
        machine=f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
    )
    doc["summary"] = cifar.summarise(doc["runs"])
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    cifar.plot(doc["summary"], args.out / f"{stem}-cifar10.png")
    write_markdown(args.out, stem)
    return 0


def _pool(workers: int, runs: list, work, *args) -> list[dict]:
    rows: list[dict] = []
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(work, run, *args) for run in runs]
        for i, future in enumerate(futures, 1):
            r = future.result()
            rows.append(r)
            top1 = f"top-1 {r['top1']:.4f}" if r.get("top1") is not None else f"{r.get('connectivity')}"
            print(
                f"[{i}/{len(runs)}] {r['panel']} {r['method']} {r['target']} s={r['sparsity']} "
                f"recal={r.get('recalibrate')}: {top1} ({r['seconds']:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    return rows


def _setting_text(panel: str, s, train_root: Path, test_root: Path, seeds: list[int]) -> str:
    data = (
        f"Data: the first {s.per_class:,} images (by file name) of each class of {train_root}/train "
        f"({10 * s.per_class:,} of 50,000), normalised with CIFAR-10's mean/std, no augmentation; "
        f"top-1 on {s.test_images:,} images of {test_root}/test, once at the end."
    )
    widths = "-".join(str(k * s.width) for k in (1, 2, 4, 4))
    net = (
        f"Net: snipit:small-cnn width {s.width} ({widths} channels, BatchNorm); seeds {seeds} (model "
        "init, data order, pruning randomness)."
    )
    if panel == "guard":
        return (
            f"{data} {net} As the panel above, but pruned as `snipit train` does by default: the collapse "
            "guard keeps 0.1% of each layer (at least 1 weight), so no layer is emptied."
        )
    if panel == "cifar10":
        return (
            f"{data} {net} Pruned at initialisation on 5 batches of 100 training images per step "
            "(--allow-collapse, as the papers prune), then SGD momentum 0.9, lr 0.05 cosine, weight decay "
            f"5e-4, batch 100, {s.epochs} epochs. Structured runs prune to equal MACs removed "
            "(--target macs)."
        )
    if panel == "latency":
        return (
            f"{data} {net} The `trained` panel's dense net, pruned by SNAP-it (calibration 5 batches of 64, "
            "BatchNorm recalibrated) with `--target latency --latency-batch "
            f"{cifar.LATENCY_BATCH}` and with `--target macs`; every slim model and the dense one timed "
            f"again at batch {cifar.LATENCY_BATCH} by `compare --latency`'s code (median of 3 interleaved "
            f"medians of 20, one thread); then each slim model fine-tuned {s.latency_finetune_epochs} "
            "epochs (SGD momentum 0.9, lr 0.005 cosine, batch 100) and evaluated again. The macs series' "
            "fine-tuned top-1 is read linearly at each latency run's measured cut."
        )
    if panel == "trained":
        return (
            f"{data} {net} The dense net trained once ({s.trained_epochs} epochs, the same optimiser), then "
            "pruned by each method (calibration 5 batches of 64, the default), no fine-tuning, written and "
            "evaluated as `snipit report --eval` does; recalibrated: the default `--recalibrate-bn` on 5 "
            "batches of 64 training images."
        )
    return (
        f"{net} Pruned at initialisation (5 batches of 64 per step, --allow-collapse) and measured by the "
        "report's connectivity block: units without inputs (every incoming weight pruned), inputs a layer no "
        "longer reads, layers with no unit left, and whether the output still depends on the input."
    )


if __name__ == "__main__":
    raise SystemExit(main())
