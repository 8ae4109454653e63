"""Speed and memory of snipit against the physical floor and against the tools users would pick.

Run by hand (not in the test suite):

    python benchmarks/speed.py [--repeats 5] [--only overhead,memory,slim,peers]

Writes ``benchmarks/results/speed.md`` and ``speed.json``. Sections:

1. overhead: wall time of the library call behind ``snipit prune`` (``run_prune``: model build,
   synthetic calibration data, S=5 SNIP-it = 7 scoring rounds x 5 batches of 64, masks, report,
   checkpoint write) divided by the bare forward+backward passes it must make (same model, same
   batches, same number of passes, gradients of the same weights), interleaved in one process.
2. memory: peak RSS of the ``snipit`` CLI (``/usr/bin/time``) with 5 vs 200 calibration batches,
   and peak RSS against model + one batch's activations + the bare interpreter with torch/timm.
3. slim: structured snap-it at node sparsity 0.3/0.5/0.7 at 224 px; measured CPU latency (batch 1
   and 32, median of >= 20 after warm-up) against the MACs ratio, batch 32 on eager PyTorch (NCHW
   and channels-last) and on onnxruntime, and a per-op profile of the 0.7 models.
4. peers: torch-pruning's MetaPruner + GroupTaylorImportance at about the same MACs as snipit's
   structured result (time to prune, MACs, latency) on resnet18 and mobilenetv3_small (depthwise),
   the structured run against the bare dense passes it replaces, a profile of one structured run;
   and torch.nn.utils.prune.global_unstructured L1 at the same sparsity as snipit's unstructured
   runs (time to prune).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from snipit_cli.data.build import DataOptions
from snipit_cli.data.calibration import SyntheticData
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.metrics.latency import measure_latency
from snipit_cli.metrics.macs import count_macs
from snipit_cli.models.arch import build_model, parse_arch
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.pruning.targets import prunable_weights
from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

RESULTS = Path(__file__).parent / "results"
OVERHEAD_CASES = [  # model, input, structured, batches, batch size
    ("timm:resnet18", (3, 32, 32), False, 5, 64),
    ("timm:resnet18", (3, 224, 224), False, 2, 16),  # 224 px: fewer, smaller batches, same steps
    ("timm:mobilenetv3_small_100", (3, 224, 224), False, 5, 64),
    ("timm:resnet18", (3, 32, 32), True, 5, 64),
]
SLIM_MODELS = [("timm:resnet18", (3, 224, 224)), ("timm:mobilenetv3_small_100", (3, 224, 224))]
BATCHES, BATCH_SIZE, STEPS = 5, 64, 5


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def request(
    spec, size, structured, out: Path, batches=BATCHES, batch_size=BATCH_SIZE, sparsity=None, target="nodes",
    round_to=1,
):  # fmt: skip
    return PruneRequest(
        model=ModelOptions(spec, num_classes=10, input_size=size),
        data=DataOptions(parse_data_spec("synthetic"), out.parent, batch_size=batch_size, batches=batches),
        sparsity=sparsity if sparsity is not None else (0.5 if structured else 0.9),
        steps=STEPS,
        output=out,
        force=True,
        structured=StructuredOptions(target=target, round_to=round_to) if structured else None,
    )


def bare_passes(spec: str, size, n_rounds: int, batches=BATCHES, batch_size=BATCH_SIZE) -> float:
    """Seconds of the forward+backward passes a prune run makes and nothing else: same model
    (eval mode, only the prunable weights requiring grad), same batches, generated beforehand."""
    torch.manual_seed(0)
    model = build_model(parse_arch(spec, num_classes=10)).eval()
    weights = list(prunable_weights(model).values())
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
    data = SyntheticData("synthetic", batch_size, batches, 0, size=size, num_classes=10)
    rounds = [list(data.batches(step)) for step in range(n_rounds)]
    x, y = rounds[0][0]  # one untimed pass: kernel selection and allocator warm-up are not the floor
    torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), weights)
    start = time.perf_counter()
    for batches in rounds:
        for x, y in batches:
            torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), weights)
    return time.perf_counter() - start


def overhead(repeats: int) -> list[dict]:
    rows = []
    for spec, size, structured, batches, batch_size in OVERHEAD_CASES:
        ratios, snipit_s, bare_s = [], [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out.safetensors"
                start = time.perf_counter()
                report = run_prune(request(spec, size, structured, out, batches, batch_size)).report
                total = time.perf_counter() - start
            rounds = report["pruning"]["calibration"]["scoring_rounds"]
            bare = bare_passes(spec, size, rounds, batches, batch_size)
            snipit_s.append(total), bare_s.append(bare), ratios.append(total / bare)
        rows.append(
            {
                "model": spec,
                "input": "x".join(map(str, size)),
                "mode": "structured snap-it 0.5" if structured else "snip-it 0.9",
                "passes": report["pruning"]["calibration"]["passes"],
                "snipit_s": spread(snipit_s),
                "bare_s": spread(bare_s),
                "ratio": spread(ratios),
            }
        )
        print(f"overhead {spec} {size} structured={structured}: {rows[-1]['ratio']}", file=sys.stderr)
    return rows


def peak_rss_mb(args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", sys.executable, *args],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        )
    return int(proc.stderr.strip().splitlines()[-1]) / 1024


def activation_mb(spec: str, size, batch: int) -> tuple[float, float]:
    """Model bytes, and the bytes of every module output of one forward pass of one batch."""
    model = build_model(parse_arch(spec, num_classes=10)).eval()
    total = 0

    def hook(_m, _i, out):
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.zeros(batch, *size))
    for h in handles:
        h.remove()
    params = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return params / 2**20, total / 2**20


def memory(repeats: int) -> dict:
    job = ["-m", "snipit_cli", "prune", "timm:resnet18", "--num-classes", "10", "--input-size", "3,32,32",
           "--batch-size", "64", "-o", "out.safetensors", "-q"]  # fmt: skip
    runs = {
        n: [peak_rss_mb([*job, "--batches", str(n)]) for _ in range(max(1, repeats // 2))] for n in (5, 200)
    }
    baseline = [
        peak_rss_mb(["-c", "import torch, timm, torch_pruning, snipit_cli.cli.app"]) for _ in range(3)
    ]
    model_mb, acts_mb = activation_mb("timm:resnet18", (3, 32, 32), 64)
    p5, p200, base = (statistics.median(runs[5]), statistics.median(runs[200]), statistics.median(baseline))
    return {
        "command": "python " + " ".join(job) + " --batches N",
        "peak_rss_mb": {"5": spread(runs[5]), "200": spread(runs[200])},
        "growth": p200 / p5 - 1,
        "interpreter_mb": spread(baseline),
        "model_mb": model_mb,
        "activations_one_batch_mb": acts_mb,
        "over_floor": (p5 - base) / (model_mb + acts_mb),
    }


#: The runtimes each slim model is timed on at batch 32 (``compare --latency-runtime``'s code).
SLIM_RUNTIMES = ("torch", "channels-last", "onnxruntime")
#: Eager ops by what they are, for the per-op profile (torch.profiler keys, self CPU time).
#: Matched in this order, so that aten::addmm is linear, not add.
OP_KINDS = {
    "convolution": ("conv",),
    "linear": ("addmm", "linear", "aten::mm"),
    "BatchNorm": ("batch_norm",),
    "pooling": ("pool",),
    "activations": ("clamp", "relu", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu"),
    "add / mul": ("add", "mul"),
}


def slim(repeats: int) -> tuple[list[dict], dict]:
    rows, profile = [], {}
    for spec, size in SLIM_MODELS:
        torch.manual_seed(0)
        dense = build_model(parse_arch(spec, num_classes=10))
        dense_lat = measure_latency(dense, size, batch_sizes=(1, 32), repeats=max(20, repeats))
        dense_lat["b32"] = {rt: _b32_ms(dense, size, rt, repeats) for rt in SLIM_RUNTIMES}
        dense_macs = count_macs(dense, size)
        for sparsity in (0.3, 0.5, 0.7):
            for round_to in (1, "auto"):
                row, model = _slim_row(spec, size, sparsity, round_to, dense_lat, dense_macs, repeats)
                rows.append(row)
                if sparsity == 0.7 and round_to == "auto":
                    profile[spec] = {
                        fmt: _op_profile(dense, model, size, fmt) for fmt in ("torch", "channels-last")
                    }
    return rows, profile


def _b32_ms(model, size, runtime: str, repeats: int) -> float:
    timing = measure_latency(model, size, batch_sizes=(32,), repeats=max(20, repeats), runtime=runtime)
    return timing["batch_sizes"]["32"]["median_ms"]


def _op_profile(dense, slim_model, size, runtime: str) -> dict:
    """Self CPU ms per op kind of one b32 forward (mean of 3 under torch.profiler), dense and slim."""
    from snipit_cli.metrics.latency import forward_on, probe_batch

    out = {}
    for name, model in (("dense", dense), ("slim", slim_model)):
        x = probe_batch(size, 32)
        with forward_on(model.eval(), size, runtime) as (forward, _), torch.inference_mode():
            forward(x)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    forward(x)
        kinds = dict.fromkeys([*OP_KINDS, "other"], 0.0)
        for event in prof.key_averages():
            key = event.key.lower()
            kind = next((k for k, words in OP_KINDS.items() if any(w in key for w in words)), "other")
            kinds[kind] += event.self_cpu_time_total / 3 / 1000
        out[name] = kinds
    return out


def _slim_row(spec, size, sparsity, round_to, dense_lat, dense_macs, repeats) -> tuple[dict, torch.nn.Module]:
    with tempfile.TemporaryDirectory() as tmp:
        req = request(
            spec, size, True, Path(tmp) / "slim.safetensors", batches=2, batch_size=16, sparsity=sparsity,
            round_to=round_to,
        )  # fmt: skip
        start = time.perf_counter()
        outcome = run_prune(req)
        prune_s = time.perf_counter() - start
    lat = measure_latency(outcome.model, size, batch_sizes=(1, 32), repeats=max(20, repeats))
    macs = outcome.report["macs"]["remaining"]
    row = {
        "model": spec,
        "node_sparsity": sparsity,
        "round_to": outcome.report["pruning"]["round_to"],
        "round_to_asked": round_to,
        "achieved_nodes": outcome.report["sparsity"]["nodes"],
        "prune_s": prune_s,
        "macs_reduction": dense_macs / macs,
        "latency_ms": {b: lat["batch_sizes"][b] for b in ("1", "32")},
        "dense_latency_ms": {b: dense_lat["batch_sizes"][b] for b in ("1", "32")},
        "b32": {},
    }
    for b in ("1", "32"):
        row[f"speedup_{b}"] = dense_lat["batch_sizes"][b]["median_ms"] / lat["batch_sizes"][b]["median_ms"]
        row[f"efficiency_{b}"] = row[f"speedup_{b}"] / row["macs_reduction"]
    for rt in SLIM_RUNTIMES:
        slim_ms = (
            lat["batch_sizes"]["32"]["median_ms"]
            if rt == "torch"
            else _b32_ms(outcome.model, size, rt, repeats)
        )
        dense_ms = dense_lat["b32"][rt]
        row["b32"][rt] = {
            "dense_ms": dense_ms,
            "slim_ms": slim_ms,
            "efficiency": dense_ms / slim_ms / row["macs_reduction"],
        }
    ratios = ", ".join(f"{rt} {v['efficiency']:.2f}" for rt, v in row["b32"].items())
    print(f"slim {spec} {sparsity} round_to={round_to}: MACs {row['macs_reduction']:.2f}x; "
          f"b32 speedup ÷ MACs: {ratios}", file=sys.stderr)  # fmt: skip
    return row, outcome.model


#: Structured peers: one plain net and one depthwise net, 224 px, the issue's case.
PEER_MODELS = ["timm:resnet18", "timm:mobilenetv3_small_100"]
#: Where a structured run's time goes, by the function that spends it (cumulative, overlapping:
#: the slim views and the trials include their own copies and traces).
PROFILE_PARTS = {
    "scoring passes (forward+backward over the batches)": ("engine.py", "_scores"),
    "slim views (copy, surgery, trace) for steps 2..": ("trials.py", "build"),
    "dependency graph traces (all)": ("groups.py", "find_unit_groups"),
    "trials before scoring (unremovable groups)": ("trials.py", "unremovable_groups"),
    "trials before cutting (broken groups)": ("trials.py", "broken_groups"),
    "--target macs search (width counts + 1 trial)": ("engine.py", "_fewest_reaching"),
    "surgery + equivalence check": ("verify.py", "remove_and_check"),
    "graph copies (all)": ("trials.py", "graph_copy"),
    "MACs counts (flop counter, all)": ("macs.py", "macs_by_module"),
}


def profile_structured(spec: str, size) -> dict:
    """One cProfile'd run of the peer case: seconds and calls per part of :data:`PROFILE_PARTS`."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        req = request(spec, size, True, Path(tmp) / "p.safetensors", batches=2, batch_size=16, sparsity=0.5,
                      target="macs")  # fmt: skip
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.runcall(run_prune, req)
        total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    parts = {}
    for label, (file, func) in PROFILE_PARTS.items():
        hits = [(v[1], v[3]) for k, v in stats.items() if k[0].endswith(file) and k[2] == func]
        parts[label] = {"calls": sum(c for c, _ in hits), "s": sum(t for _, t in hits)}
    return {"total_s": total, "parts": parts}


def structured_peer(spec: str, repeats: int) -> dict:
    """snipit --structured --target macs 0.5 against MetaPruner + GroupTaylorImportance making
    the same 7 x 2 passes of 16 images, interleaved; and against the bare dense passes."""
    import torch_pruning as tp

    size = (3, 224, 224)
    example = torch.randn(1, *size)
    data = SyntheticData("synthetic", 16, 2, 0, size=size, num_classes=10)
    snipit_times, meta_times, bare_times = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "s.safetensors"
            req = request(spec, size, True, out, batches=2, batch_size=16, sparsity=0.5, target="macs")
            start = time.perf_counter()
            outcome = run_prune(req)
            snipit_times.append(time.perf_counter() - start)
        torch.manual_seed(0)
        model = build_model(parse_arch(spec, num_classes=10))
        start = time.perf_counter()
        # Uniform channel ratio r gives MACs ~ (1 - r)^2: r = 1 - sqrt(0.5) for about -50% MACs.
        pruner = tp.pruner.MetaPruner(
            model, example, importance=tp.importance.GroupTaylorImportance(), pruning_ratio=1 - 0.5**0.5,
            ignored_layers=[model.get_classifier()],
        )  # fmt: skip
        model.zero_grad()
        for step in range(7):  # the same passes snap-it makes: 7 rounds x 2 batches of 16
            for x, y in data.batches(step):
                torch.nn.functional.cross_entropy(model(x), y).backward()
        pruner.step()
        meta_times.append(time.perf_counter() - start)
        bare_times.append(bare_passes(spec, size, 7, 2, 16))
    row = {
        "model": spec,
        "snipit": {
            "prune_s": spread(snipit_times),
            "macs": outcome.report["macs"]["remaining"],
            "dense_macs": outcome.report["macs"]["dense"],
            "latency_ms": measure_latency(outcome.model, size, batch_sizes=(1, 32), repeats=20)[
                "batch_sizes"
            ],
        },
        "metapruner_taylor": {
            "prune_s": spread(meta_times),
            "macs": count_macs(model, size),
            "latency_ms": measure_latency(model, size, batch_sizes=(1, 32), repeats=20)["batch_sizes"],
        },
        "bare_dense_passes_s": spread(bare_times),
        "time_ratio": spread([s / m for s, m in zip(snipit_times, meta_times, strict=True)]),
        "vs_dense_passes": spread([s / b for s, b in zip(snipit_times, bare_times, strict=True)]),
        "profile": profile_structured(spec, size),
    }
    print(f"peer {spec}: snipit/MetaPruner {row['time_ratio']['median']:.2f}", file=sys.stderr)
    return row


def peers(repeats: int) -> dict:
    from torch.nn.utils import prune as torch_prune

    spec = "timm:resnet18"
    structured = [structured_peer(s, repeats) for s in PEER_MODELS]

    def unstructured(method: str) -> list[float]:
        times = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                req = request(spec, (3, 32, 32), False, Path(tmp) / "u.safetensors")
                req.method = method
                start = time.perf_counter()
                run_prune(req)
                times.append(time.perf_counter() - start)
        return times

    l1_times = []
    for _ in range(repeats):
        torch.manual_seed(0)
        model = build_model(parse_arch(spec, num_classes=10))
        start = time.perf_counter()
        params = [(model.get_submodule(name), "weight") for name in prunable_weights(model)]
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.9)
        for m, name in params:
            torch_prune.remove(m, name)
        l1_times.append(time.perf_counter() - start)
    magnitude_times, snipit_u_times = unstructured("magnitude"), unstructured("snip-it")
    return {
        "structured": structured,
        "unstructured": {
            "torch_global_l1_s": spread(l1_times),
            "snipit_magnitude_s": spread(magnitude_times),
            "snipit_snip_it_s": spread(snipit_u_times),
            "magnitude_ratio": statistics.median(magnitude_times) / statistics.median(l1_times),
        },
    }


def _fmt(spread_: dict, unit: str = "", digits: int = 2) -> str:
    return (
        f"{spread_['median']:.{digits}f}{unit} [{spread_['min']:.{digits}f}–{spread_['max']:.{digits}f}] "
        f"(n={spread_['n']})"
    )


def _slim_cell(r: dict, runtime: str) -> str:
    c = r.get("b32", {}).get(runtime)
    if c is None:  # rows of runs before the runtime was timed
        return "—"
    return f"{c['dense_ms']:.0f} / {c['slim_ms']:.0f}, **{c['efficiency']:.2f}**"


def _op_profile_lines(profile: dict) -> list[str]:
    """Where a b32 forward's time goes, dense against slim, at node sparsity 0.7 (--round-to auto)."""
    if not profile:
        return []
    lines = [
        "Where the b32 forward's time goes at node sparsity 0.7, --round-to auto (torch.profiler self CPU "
        "ms, mean of 3; dense / slim, then dense ÷ slim): the convolutions shrink with the MACs, the "
        "memory-bound ops only with the activations, and SNAP-it's pruning falls mostly on the wide, low-"
        "resolution late layers, so eager PyTorch cannot deliver the MAC reduction; a runtime that folds "
        "and fuses them (onnxruntime above) leaves mostly convolutions.",
        "",
    ]
    columns = [(spec, fmt) for spec, by in profile.items() for fmt in by]
    lines += [
        "| op kind | " + " | ".join(f"{spec} {fmt}" for spec, fmt in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    kinds = list(next(iter(next(iter(profile.values())).values()))["dense"])
    for kind in [*kinds, "all"]:
        cells = []
        for spec, fmt in columns:
            d, s_ = profile[spec][fmt]["dense"], profile[spec][fmt]["slim"]
            dv, sv = (sum(d.values()), sum(s_.values())) if kind == "all" else (d[kind], s_[kind])
            cells.append(f"{dv:.0f} / {sv:.0f} ({dv / sv:.2f}×)" if sv > 0.05 else f"{dv:.0f} / {sv:.0f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _target_latency_section() -> list[str]:
    """Issue 19's latency target, from its own benchmark's results (``target_latency.py``)."""
    path = RESULTS / "target_latency.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    lines = [
        "## 5. `--target latency`: the cut asked against the cut measured again",
        "",
        f"From `{doc['meta']['command']}` ([target_latency.md](target_latency.md)): 224 px, latency at "
        f"batch {doc['rows'][0]['batch']}, re-measured by `compare --latency`'s code.",
        "",
        "| model | asked | re-measured (goal ±5 pp) | MACs removed | prune s | --target macs at the same "
        "fraction: latency cut, prune s |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        m = r["macs_target"]
        lines.append(
            f"| {r['model']} | {r['target']} | {r['achieved_remeasured']:.3f} ({r['off_by_pp']:.1f} pp) | "
            f"{r['macs_removed']:.3f} | {r['prune_s']:.1f} | "
            f"{m['latency_cut_remeasured']:.3f}, {m['prune_s']:.1f} |"
        )
    return [*lines, ""]


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Speed and memory",
        "",
        f"Command: `{meta['command']}`; torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}. "
        "Figures: median [min–max] (n runs); "
        + (
            "each section from one run (a later `--merge` run replaced the sections it names)."
            if "--merge" in meta["command"]
            else "all in one run of the script."
        ),
        "",
    ]
    if "overhead" in results:
        lines += [
            "## 1. Prune overhead: `run_prune` wall time ÷ the bare forward+backward passes it makes",
            "",
            "| model | input | mode | passes | snipit s | bare passes s | ratio (goal ≤ 1.15) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["overhead"]:
            lines.append(
                f"| {r['model']} | {r['input']} | {r['mode']} | {r['passes']} | {_fmt(r['snipit_s'])} | "
                f"{_fmt(r['bare_s'])} | {_fmt(r['ratio'], digits=3)} |"
            )
        lines.append("")
    if "memory" in results:
        m = results["memory"]
        lines += [
            "## 2. Memory: peak RSS of the CLI (`/usr/bin/time -f %M`)",
            "",
            f"`{m['command']}`",
            "",
            "| | peak RSS MB |",
            "|---|---|",
            f"| 5 batches | {_fmt(m['peak_rss_mb']['5'], digits=0)} |",
            f"| 200 batches | {_fmt(m['peak_rss_mb']['200'], digits=0)} |",
            f"| growth 5 → 200 (goal < 5%) | {100 * m['growth']:.1f}% |",
            f"| interpreter with torch, timm, torch-pruning | {_fmt(m['interpreter_mb'], digits=0)} |",
            f"| model (params + buffers) | {m['model_mb']:.1f} |",
            f"| activations of one batch (every module output) | {m['activations_one_batch_mb']:.1f} |",
            f"| (peak − interpreter) ÷ (model + one batch) | {m['over_floor']:.2f} |",
            "",
        ]
    if "slim" in results:
        lines += [
            "## 3. Slim models: measured CPU latency vs MACs (structured snap-it, 224 px)",
            "",
            "Batch 32 timed on three runtimes by `compare --latency --latency-runtime`'s code: eager "
            "PyTorch as loaded (NCHW), eager PyTorch in channels-last, and the ONNX export on onnxruntime "
            "(CPU provider, BatchNorm folded, activations fused). Each cell: dense / slim ms, then b32 "
            "speedup ÷ MACs reduction (goal ≥ 0.8).",
            "",
            "| model | node sparsity asked (achieved) | --round-to | MACs reduction | speedup b1 (torch) | "
            + " | ".join(f"{rt} b32: dense / slim ms, speedup ÷ MACs" for rt in SLIM_RUNTIMES)
            + " |",
            "|---|---|---|---|---|" + "---|" * len(SLIM_RUNTIMES),
        ]
        for r in results["slim"]:
            cells = [_slim_cell(r, rt) for rt in SLIM_RUNTIMES]
            lines.append(
                f"| {r['model']} | {r['node_sparsity']} ({r['achieved_nodes']:.3f}) | {r['round_to']}"
                f"{' (auto)' if r.get('round_to_asked') == 'auto' else ''} | "
                f"{r['macs_reduction']:.2f}× | {r['speedup_1']:.2f}× | " + " | ".join(cells) + " |"
            )
        lines.append("")
        lines += _op_profile_lines(results.get("slim_profile", {}))
    if "peers" in results:
        p = results["peers"]
        un = p["unstructured"]
        lines += [
            "## 4. Peers, same run",
            "",
            "Structured, 224 px, `--structured --target macs --sparsity 0.5` against torch-pruning's",
            "MetaPruner + GroupTaylorImportance at about the same MACs, both making 7 rounds × 2",
            'batches of 16 (interleaved runs); "bare dense passes" are the 14 forward+backward passes',
            "on the dense model alone.",
            "",
            "| model | snipit s | MetaPruner s | snipit ÷ MetaPruner (goal ≤ 1.0) | bare dense passes s "
            "| snipit ÷ dense passes | MACs snipit / MetaPruner (dense) "
            "| latency ms b1 / b32 snipit; MetaPruner |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in p["structured"]:
            sn, mp = r["snipit"], r["metapruner_taylor"]
            lines.append(
                f"| {r['model']} | {_fmt(sn['prune_s'])} | {_fmt(mp['prune_s'])} | {_fmt(r['time_ratio'])} | "
                f"{_fmt(r['bare_dense_passes_s'])} | {_fmt(r['vs_dense_passes'])} | "
                f"{sn['macs']:,} / {mp['macs']:,} ({sn['dense_macs']:,}) | "
                f"{sn['latency_ms']['1']['median_ms']:.1f} / {sn['latency_ms']['32']['median_ms']:.0f}; "
                f"{mp['latency_ms']['1']['median_ms']:.1f} / {mp['latency_ms']['32']['median_ms']:.0f} |"
            )
        lines += [
            "",
            "Profile of one snipit run each (cProfile, so Python-heavy parts read high; parts overlap):",
            "",
        ]
        models = [r["model"] for r in p["structured"]]
        lines += ["| part | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for label in PROFILE_PARTS:
            cells = [r["profile"]["parts"][label] for r in p["structured"]]
            lines.append(
                f"| {label} | " + " | ".join(f"{c['s']:.2f} s ({c['calls']}×)" for c in cells) + " |"
            )
        lines.append("| whole run under the profiler | " + " | ".join(
            f"{r['profile']['total_s']:.2f} s" for r in p["structured"]) + " |")  # fmt: skip
        lines += [
            "",
            "Unstructured, resnet18 @ 32 px, sparsity 0.9:",
            "",
            "| tool | time s |",
            "|---|---|",
            f"| torch global_unstructured L1 (+ remove) | {_fmt(un['torch_global_l1_s'], 's', 3)} |",
            f"| snipit --method magnitude (whole run) | {_fmt(un['snipit_magnitude_s'])} |",
            f"| snipit snip-it (7 rounds × 5 batches of 64) | {_fmt(un['snipit_snip_it_s'])} |",
            "",
            f"snipit magnitude / torch L1: {un['magnitude_ratio']:.2f}",
            "",
        ]
    lines += _target_latency_section()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="overhead,memory,slim,peers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--merge", action="store_true", help="replace only these sections in --out's JSON")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    parser.add_argument("--models", default=None, help="overhead: only these models (comma-separated specs)")
    args = parser.parse_args(argv)
    if args.threads:  # 1: a busy second core then slows the runs instead of stalling torch's pool
        torch.set_num_threads(args.threads)
    if args.models:
        OVERHEAD_CASES[:] = [c for c in OVERHEAD_CASES if c[0] in args.models.split(",")]
    sections = args.only.split(",")
    results = {
        "meta": {
            "command": "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {platform.python_version()}",
        }
    }
    for name in sections:
        started = time.perf_counter()
        results[name] = globals()[name](args.repeats)
        if name == "slim":  # the rows and the per-op profile of the 0.7 rows
            results["slim"], results["slim_profile"] = results["slim"]
        print(f"{name}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        earlier = json.loads((args.out / "speed.json").read_text())
        results["meta"]["command"] = f"{earlier['meta']['command']}; then {results['meta']['command']}"
        results = {**earlier, **results}
    (args.out / "speed.json").write_text(json.dumps(results, indent=1))
    (args.out / "speed.md").write_text(markdown(results))
    print(args.out / "speed.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
