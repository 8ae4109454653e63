"""Pruning quality on real CIFAR-10 (the paper's dataset): ``quality.py --dataset cifar10``.

Three panels, each written with its command and wall time:

- ``cifar10``: pruning at initialisation, then a fixed training budget, every unstructured method
  at 0.9-0.99 weight sparsity and every structured one at equal MACs removed (SNIP-it's setting).
- ``trained``: a dense network trained here once, then pruned by every method with no
  fine-tuning, with and without BatchNorm recalibration (``prune --recalibrate-bn``): what users
  who prune their trained checkpoints get.
- ``disconnection``: the units left without inputs or outputs and whether an input-output path
  survives (the report's ``connectivity`` block), per method and sparsity, pruned at
  initialisation (disconnection is fixed by the masks; training keeps them).
- ``latency``: the trained net of ``trained`` pruned by SNAP-it with ``--target latency`` and
  with ``--target macs`` at several levels (recalibrated, no fine-tuning); every slim model's
  latency measured again by ``compare --latency``'s code, so the two are compared at equal
  measured latency (issue 19 item 4).

The CPU setting is reduced (see ``SETTING``): a small CNN on a class-balanced subset of the
training set. The JPEG images are lossy re-encodings (``../shared/data/README.md``): the numbers
are for comparing methods, not against published accuracies.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

UNSTRUCTURED = ("random", "magnitude", "snip", "snip-it", "grasp", "synflow")
STRUCTURED = ("random", "l1", "snap", "snap-it")
PANELS = ("cifar10", "guard", "trained", "disconnection", "latency")
#: Batch the latency panel prunes for and measures at: at batch 1 a forward of this net is tens of
#: microseconds, timer noise.
LATENCY_BATCH = 64
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Setting:
    """The reduced CPU setting; ``--quick`` shrinks it to a pipeline check."""

    width: int  # small-cnn channels: width-2w-4w-4w
    per_class: int  # training images per class (a balanced subset of the 5,000)
    epochs: int  # training budget of every at-init run
    trained_epochs: int  # the dense network of the ``trained`` panel
    levels: tuple[float, ...]  # weight sparsities
    macs_levels: tuple[float, ...]  # MACs removed, structured
    trained_levels: tuple[float, ...]  # weight sparsities of the trained panel
    trained_nodes: tuple[float, ...]  # node sparsities of the trained panel
    disconnection_levels: tuple[float, ...]
    test_images: int  # of the 10,000 test images, evaluated once at the end
    latency_levels: tuple[float, ...] = (0.3, 0.5)  # --target latency, latency panel
    # --target macs beside it, wide enough that every latency run has a macs run on each side of
    # its measured cut (on this net 0.7 of MACs removed cuts only about a third of the latency)
    latency_macs_levels: tuple[float, ...] = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
    latency_finetune_epochs: int = 3  # after pruning, every latency-panel model (same optimiser)


SETTING = {
    False: Setting(
        8,
        1000,
        6,
        12,
        (0.9, 0.95, 0.98, 0.99),
        (0.5, 0.8),
        (0.5, 0.8, 0.9),
        (0.3, 0.5),
        (0.9, 0.95, 0.98, 0.99, 0.995),
        10_000,
    ),
    True: Setting(4, 10, 1, 1, (0.9,), (0.5,), (0.5,), (0.3,), (0.99,), 100, (0.3,), (0.3,), 1),
}


@dataclass(frozen=True)
class Run:
    """One unit of work of a panel, done in a worker process."""

    panel: str
    method: str
    sparsity: float
    structured: bool
    target: str  # weights, nodes or macs
    seed: int = 0
    recalibrate: bool | None = None  # trained panel only


def plan(quick: bool, panels: tuple[str, ...], seeds: tuple[int, ...] = (0,)) -> list[Run]:
    """The at-init runs (one per seed: model init, data order, pruning randomness) and the
    disconnection ones (seed 0)."""
    s = SETTING[quick]
    runs: list[Run] = []
    if "cifar10" in panels:
        for seed in seeds:
            runs.append(Run("cifar10", "dense", 0.0, False, "weights", seed))
            runs += [Run("cifar10", m, lv, False, "weights", seed) for lv in s.levels for m in UNSTRUCTURED]
            runs += [Run("cifar10", m, lv, True, "macs", seed) for lv in s.macs_levels for m in STRUCTURED]
    if "guard" in panels:  # the high sparsities again, with snipit's default collapse guard
        for seed in seeds:
            runs += [
                Run("guard", m, lv, False, "weights", seed) for lv in s.levels[-2:] for m in UNSTRUCTURED
            ]
    if "disconnection" in panels:
        runs += [
            Run("disconnection", m, level, False, "weights")
            for level in s.disconnection_levels
            for m in UNSTRUCTURED
        ]
    return runs


def latency_plan(quick: bool) -> list[Run]:
    """SNAP-it on the trained net: ``--target latency`` at its levels, ``--target macs`` at more,
    so that each latency run has macs runs on both sides of its measured latency."""
    s = SETTING[quick]
    runs = [Run("latency", "snap-it", lv, True, "latency", recalibrate=True) for lv in s.latency_levels]
    return runs + [
        Run("latency", "snap-it", lv, True, "macs", recalibrate=True) for lv in s.latency_macs_levels
    ]


def trained_plan(quick: bool) -> list[Run]:
    s = SETTING[quick]
    runs = [Run("trained", "dense", 0.0, False, "weights", recalibrate=False)]
    for recal in (False, True):
        runs += [
            Run("trained", m, lv, False, "weights", recalibrate=recal)
            for lv in s.trained_levels
            for m in UNSTRUCTURED
        ]
        runs += [
            Run("trained", m, lv, True, "nodes", recalibrate=recal)
            for lv in s.trained_nodes
            for m in STRUCTURED
        ]
    return runs


def balanced_subset(train_root: Path, per_class: int, into: Path) -> Path:
    """``into/train/<class>/``: links to the first ``per_class`` images (by name) of each class."""
    for cls in sorted(p for p in (train_root / "train").iterdir() if p.is_dir()):
        target = into / "train" / cls.name
        target.mkdir(parents=True)
        for image in sorted(cls.iterdir())[:per_class]:
            (target / image.name).symlink_to(image.resolve())
    return into


def _data(folder: Path, split: str, batch_size: int, batches: int, seed: int = 0):
    from snipit_cli.data.build import DataOptions
    from snipit_cli.data.specs import parse_data_spec

    spec = parse_data_spec(f"imagefolder:{folder}")
    return DataOptions(
        spec, folder, split=split, batch_size=batch_size, batches=batches, seed=seed, mean=MEAN, std=STD
    )


def _evaluate(checkpoint: Path, test_root: Path, images: int) -> float:
    """Top-1 on ``images`` of the test set, read by ``snipit report --eval``'s code."""
    from snipit_cli.workflows.describe import DescribeRequest, describe
    from snipit_cli.workflows.session import ModelOptions

    batch = min(500, images)
    data = _data(test_root, "test", batch, images // batch)
    return describe(DescribeRequest(ModelOptions(str(checkpoint)), data=data, device="cpu"))["eval"]["top1"]


def _latency_cut(dense: Path, slim: Path) -> dict:
    """Both models timed by ``compare --latency``'s code, interleaved (median of 3 medians of 20)."""
    from snipit_cli.metrics.latency import measure_latency
    from snipit_cli.models.loading import load_model

    models = {"dense": load_model(dense), "slim": load_model(slim)}
    ms: dict[str, list[float]] = {"dense": [], "slim": []}
    for _ in range(3):
        for name, model in models.items():
            timing = measure_latency(model, (3, 32, 32), batch_sizes=(LATENCY_BATCH,), repeats=20)
            ms[name].append(timing["batch_sizes"][str(LATENCY_BATCH)]["median_ms"])
    dense_ms, slim_ms = statistics.median(ms["dense"]), statistics.median(ms["slim"])
    return {"dense_ms": dense_ms, "slim_ms": slim_ms, "removed": 1 - slim_ms / dense_ms}


def _model(width: int):
    from snipit_cli.workflows.session import ModelOptions

    return ModelOptions("snipit:small-cnn", arch_kwargs={"width": width, "in_chans": 3})


def execute(run: Run, subset: str, test_root: str, quick: bool, trained: str | None = None) -> dict:
    """One run: train after pruning at init (``cifar10``), prune a trained net (``trained``), or
    prune at init and read the connectivity (``disconnection``)."""
    import torch

    torch.set_num_threads(1)
    s = SETTING[quick]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.safetensors"
        if run.panel in ("cifar10", "guard"):
            report = _train(run, Path(subset), out, s)
        else:
            report = _prune(run, Path(subset), out, s, Path(trained) if trained else None)
        top1 = _evaluate(out, Path(test_root), s.test_images) if run.panel != "disconnection" else None
        latency = _latency_cut(Path(trained), out) if run.panel == "latency" else None
        if run.panel == "latency":  # accuracy per latency is read after fine-tuning, as one deploys
            tuned = Path(tmp) / "tuned.safetensors"
            _finetune(out, Path(subset), tuned, s)
            latency["top1_finetuned"] = _evaluate(tuned, Path(test_root), s.test_images)
    row = {
        **run.__dict__,
        "top1": top1,
        "achieved": report["sparsity"]["achieved"] if report["sparsity"]["achieved"] is not None else 0.0,
        "params_nonzero": report["params"]["nonzero"],
        "macs": report["macs"]["remaining"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    if latency is not None:
        row["latency"] = {**latency, "reported": report["pruning"].get("latency", {}).get("removed")}
        row["macs_removed"] = 1 - report["macs"]["remaining"] / report["macs"]["dense"]
    connectivity = report.get("connectivity")
    if connectivity:
        row["connectivity"] = {k: v for k, v in connectivity.items() if k != "layers"}
    return row


def _train(run: Run, subset: Path, out: Path, s: Setting) -> dict:
    from snipit_cli.pruning.structured.options import StructuredOptions
    from snipit_cli.training.optim import OptimizerOptions
    from snipit_cli.workflows.train import PruneWhileTraining, TrainRequest, run_train

    prune = None
    if run.method != "dense":
        prune = PruneWhileTraining(
            method=run.method,
            sparsity=run.sparsity,
            delay=0,
            freq=0,
            structured=StructuredOptions(target=run.target) if run.structured else None,
            batches=5,
            allow_collapse=run.panel != "guard",  # as the papers prune: the ranking alone decides
        )
    request = TrainRequest(
        model=_model(s.width),
        data=_data(subset, "train", 100, 5, run.seed),
        epochs=s.epochs,
        optimizer=OptimizerOptions("sgd", lr=0.05),
        test_split=None,
        prune=prune,
        seed=run.seed,
        device="cpu",
        output=out,
        checkpoint_every=0,
    )
    return run_train(request).report


def _finetune(slim: Path, subset: Path, out: Path, s: Setting) -> dict:
    """The slim checkpoint trained on for a few epochs, at a tenth of the from-scratch rate."""
    from snipit_cli.workflows.prune import ModelOptions

    return _fit(ModelOptions(str(slim)), subset, out, s.latency_finetune_epochs, lr=0.005)


def train_dense(subset: Path, out: Path, quick: bool) -> dict:
    """The ``trained`` panel's dense network, trained once."""
    s = SETTING[quick]
    return _fit(_model(s.width), subset, out, s.trained_epochs, lr=0.05)


def _fit(model, subset: Path, out: Path, epochs: int, lr: float) -> dict:
    """``model`` trained with SGD (batch 100, seed 0, no evaluation) and written to ``out``."""
    from snipit_cli.training.optim import OptimizerOptions
    from snipit_cli.workflows.train import TrainRequest, run_train

    request = TrainRequest(
        model=model,
        data=_data(subset, "train", 100, 5),
        epochs=epochs,
        optimizer=OptimizerOptions("sgd", lr=lr),
        test_split=None,
        seed=0,
        device="cpu",
        output=out,
        checkpoint_every=0,
    )
    return run_train(request).report


def _prune(run: Run, subset: Path, out: Path, s: Setting, trained: Path | None) -> dict:
    from snipit_cli.workflows.describe import DescribeRequest, describe
    from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

    model = ModelOptions(str(trained)) if trained else _model(s.width)
    if run.method == "dense":  # the trained net as it is
        out.write_bytes(trained.read_bytes())  # type: ignore[union-attr]
        return describe(DescribeRequest(ModelOptions(str(out)), device="cpu"))
    request = PruneRequest(
        model=model,
        data=_data(subset, "train", 64, 5, run.seed),
        method=run.method,
        sparsity=run.sparsity,
        seed=run.seed,
        device="cpu",
        output=out,
        structured=_structured(run) if run.structured else None,
        allow_collapse=run.panel == "disconnection",  # the criteria as published
        recalibrate_bn=run.recalibrate if run.panel in ("trained", "latency") else False,
    )
    return run_prune(request).report


def _structured(run: Run):
    from snipit_cli.pruning.structured.options import StructuredOptions

    batch = LATENCY_BATCH if run.target == "latency" else 1
    return StructuredOptions(target=run.target, latency_batch=batch)


# --- summary -------------------------------------------------------------------------------


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(
            (r["panel"], r["target"], r["method"], r["sparsity"], r.get("recalibrate")), []
        ).append(r)
    out = []
    for (panel, target, method, sparsity, recal), rs in groups.items():
        acc = [r["top1"] for r in rs if r["top1"] is not None]
        conn = [r["connectivity"] for r in rs if r.get("connectivity")]
        out.append(
            {
                "panel": panel,
                "of": target,
                "method": method,
                "sparsity": sparsity,
                "recalibrate": recal,
                "top1": statistics.fmean(acc) if acc else None,
                "seeds": len(rs),
                "top1_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "achieved": statistics.fmean(r["achieved"] for r in rs),
                "params_nonzero": statistics.fmean(r["params_nonzero"] for r in rs),
                "macs": statistics.fmean(r["macs"] for r in rs),
                "seconds": statistics.median(r["seconds"] for r in rs),
                "connectivity": conn[0] if conn else None,
                "latency": rs[0].get("latency"),
                "macs_removed": rs[0].get("macs_removed"),
            }
        )
    return out


ANCHORS = (
    "Anchors (SynFlow paper, Tanaka et al. 2020, original CIFAR-10 pixels, 160 epochs, 3 seeds, "
    "top-1 %): VGG-16-BN at 98.2% sparsity: SNIP 90.61, GraSP 88.96, SynFlow 91.21; ResNet-18 at "
    "98.2%: SNIP 91.84, GraSP 91.18, SynFlow 91.75. The SNIP-it paper reports SNIP-it above SNIP "
    "and GraSP there. Our reduced CPU setting (a small CNN, a 10% subset, 6 epochs, JPEG pixels) "
    "is far below these absolute numbers; compare the methods' order, not the values."
)


def markdown(summary: list[dict], meta: dict) -> list[str]:
    """The CIFAR-10 sections of ``quality.md``."""
    lines = ["# Pruning quality on real CIFAR-10", ""]
    for panel in PANELS:
        rows = [s for s in summary if s["panel"] == panel]
        info = meta.get("panels", {}).get(panel)
        if not rows or not info:
            continue
        lines += [
            f"## {PANEL_TITLES[panel]}",
            "",
            f"Command: `{info['command']}`; wall time "
            f"{info['wall_minutes']:.1f} min ({meta['workers']} worker processes × 1 thread).  ",
            info["setting"],
            "",
        ]
        lines += TABLES[panel](rows)
        if panel == "cifar10":
            lines += ["", ANCHORS]
        lines.append("")
    return lines


def _order(s: dict) -> tuple:
    methods = ("dense", *UNSTRUCTURED, *STRUCTURED)
    return (s["of"] != "weights", s["sparsity"], methods.index(s["method"]))


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def _init_table(rows: list[dict]) -> list[str]:
    out = [
        "| method | sparsity of | asked | achieved | top-1 (mean ± std, seeds) | nonzero params | MACs "
        "| s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(rows, key=_order):
        top1 = f"{_pct(s['top1'])} ± {100 * s.get('top1_std', 0.0):.2f} ({s['seeds']})"
        out.append(
            f"| {s['method']} | {s['of']} | {s['sparsity']} | {s['achieved']:.4f} | {top1} | "
            f"{s['params_nonzero']:,.0f} | {s['macs']:,.0f} | {s['seconds']:.0f} |"
        )
    return out


def _trained_table(rows: list[dict]) -> list[str]:
    out = [
        "| method | sparsity of | asked | top-1 as pruned | top-1 recalibrated | gain |",
        "|---|---|---|---|---|---|",
    ]
    by = {(s["method"], s["of"], s["sparsity"], s["recalibrate"]): s for s in rows}
    for s in sorted((s for s in rows if not s["recalibrate"]), key=_order):
        other = by.get((s["method"], s["of"], s["sparsity"], True))
        gain = f"{100 * (other['top1'] - s['top1']):+.2f}" if other else "—"
        out.append(
            f"| {s['method']} | {s['of']} | {s['sparsity']} | {_pct(s['top1'])} | "
            f"{_pct(other and other['top1'])} | {gain} |"
        )
    return out


def _disconnection_table(rows: list[dict]) -> list[str]:
    out = [
        "| method | sparsity | units without inputs | inputs unused | layers cut | path survives |",
        "|---|---|---|---|---|---|",
    ]
    for s in sorted(rows, key=_order):
        c = s["connectivity"] or {}
        out.append(
            f"| {s['method']} | {s['sparsity']} | {c.get('no_incoming', '—')} of {c.get('units', '—')} | "
            f"{c.get('unused_inputs', '—')} | {c.get('layers_cut', '—')} | "
            f"{ {True: 'yes', False: 'no'}.get(c.get('path'), '—') } |"
        )
    return out


def _latency_table(rows: list[dict]) -> list[str]:
    """Each run's measured latency cut and top-1 as pruned and fine-tuned; for each --target
    latency run, the --target macs series' fine-tuned top-1 read (linearly) at the same cut."""
    out = [
        "| target | asked | latency cut, re-measured (reported) | dense / slim ms | MACs removed | top-1 "
        "as pruned | top-1 fine-tuned | --target macs fine-tuned top-1 at the same cut | difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    macs = sorted(
        (s["latency"]["removed"], _tuned(s)) for s in rows if s["of"] == "macs" and _tuned(s) is not None
    )
    for s in sorted(rows, key=lambda s: (s["of"] != "latency", s["sparsity"])):
        lat = s["latency"] or {}
        tuned = _tuned(s)
        at = _interpolate(macs, lat["removed"]) if s["of"] == "latency" and tuned is not None else None
        reported = f"{lat['reported']:.3f}" if lat.get("reported") is not None else "—"
        out.append(
            f"| {s['of']} | {s['sparsity']} | {lat.get('removed', 0):.3f} ({reported}) | "
            f"{lat.get('dense_ms', 0):.2f} / {lat.get('slim_ms', 0):.2f} | {s['macs_removed']:.3f} | "
            f"{_pct(s['top1'])} | {_pct(tuned)} | {_pct(at)} | "
            f"{'—' if at is None else format(100 * (tuned - at), '+.2f')} |"
        )
    return out


def _tuned(s: dict) -> float | None:
    return (s["latency"] or {}).get("top1_finetuned")


def _interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """y at x on the polyline through ``points`` (sorted by x); None outside their range."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):  # noqa: B905 (one shorter by design)
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else (y0 + y1) / 2
    return None


PANEL_TITLES = {
    "cifar10": "Pruned at initialisation, then trained (unstructured by weights, structured at equal MACs)",
    "guard": "The highest sparsities again, with snipit's default collapse guard (no --allow-collapse)",
    "trained": "Trained checkpoint, pruned with no fine-tuning, without and with BatchNorm recalibration",
    "disconnection": "Disconnection at initialisation (unstructured, --allow-collapse)",
    "latency": "Accuracy at equal measured latency: --target latency against --target macs (SNAP-it)",
}
TABLES = {
    "cifar10": _init_table,
    "guard": _init_table,
    "trained": _trained_table,
    "disconnection": _disconnection_table,
    "latency": _latency_table,
}


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    init = [s for s in summary if s["panel"] == "cifar10" and s["of"] == "weights" and s["method"] != "dense"]
    levels = sorted({s["sparsity"] for s in init})
    for method in UNSTRUCTURED:
        pts = sorted((s["sparsity"], s["top1"]) for s in init if s["method"] == method)
        if pts:
            axes[0].plot(
                [levels.index(p[0]) for p in pts], [100 * p[1] for p in pts], marker="o", label=method
            )
    axes[0].set_xticks(range(len(levels)), [str(v) for v in levels])
    axes[0].set_title("CIFAR-10, pruned at init then trained", fontsize=9)
    axes[0].set_xlabel("weight sparsity")
    axes[0].set_ylabel("top-1 (%)")
    trained = [s for s in summary if s["panel"] == "trained" and s["method"] != "dense"]
    labels = sorted(
        {(s["of"], s["sparsity"], s["method"]) for s in trained}, key=lambda k: (k[0], k[1], k[2])
    )
    for recal, offset in ((False, -0.2), (True, 0.2)):
        vals = [
            next(
                (
                    100 * s["top1"]
                    for s in trained
                    if (s["of"], s["sparsity"], s["method"]) == k and s["recalibrate"] == recal
                ),
                0.0,
            )
            for k in labels
        ]
        axes[1].bar(
            [i + offset for i in range(len(labels))],
            vals,
            width=0.4,
            label="recalibrated" if recal else "as pruned",
        )
    axes[1].set_xticks(range(len(labels)), [f"{m} {o[0]}{v}" for o, v, m in labels], rotation=90, fontsize=6)
    axes[1].set_title("trained net, pruned, no fine-tuning", fontsize=9)
    axes[1].set_ylabel("top-1 (%)")
    disc = [s for s in summary if s["panel"] == "disconnection" and s["connectivity"]]
    levels = sorted({s["sparsity"] for s in disc})
    for method in UNSTRUCTURED:
        pts = sorted(
            (s["sparsity"], s["connectivity"]["no_incoming"] + s["connectivity"]["unused_inputs"])
            for s in disc
            if s["method"] == method
        )
        if pts:
            axes[2].plot([levels.index(p[0]) for p in pts], [p[1] for p in pts], marker="o", label=method)
    axes[2].set_xticks(range(len(levels)), [str(v) for v in levels])
    axes[2].set_title("disconnected units at init", fontsize=9)
    axes[2].set_xlabel("weight sparsity")
    axes[2].set_ylabel("units without inputs + inputs unused")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
