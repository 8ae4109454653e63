"""Structured pruning coverage: snipit and Torch-Pruning's MetaPruner on the same architectures.

Run by hand (not part of the test suite; about 40 minutes on 2 CPU cores):

    python benchmarks/coverage.py [--only NAME ...] [--sparsities 0.3 0.6] [--timeout 600]

Each model runs in its own process (a crash or a hang is a finding, not the end of the run):

- snipit: ``run_prune`` with ``--structured`` (SNAP-it, 5 steps, 2 x 8 synthetic images, random
  init) at each node sparsity; a case passes when the run wrote a slim model whose equivalence
  check held, and ``load_model`` of the file gives bit-identical outputs. Recorded: params and
  MACs dense -> slim, groups kept dense (and why), the wall time of the whole run and its ratio to
  the time of the scoring passes it made (forward + backward of the dense model, timed apart).
- Torch-Pruning: ``MetaPruner`` with uniform L1 magnitude importance at the same channel ratio
  (heads of timm attention given, as its ViT example does), then a forward pass, and
  ``tp.state_dict``/``tp.load_state_dict`` into a fresh model with identical outputs.

Writes benchmarks/results/coverage.md and coverage.json; ``tools/readme_archs.py`` turns the json
into the README's list of tested architectures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
USER_NETS = HERE / "user_nets.py"
NUM_CLASSES = 10
BATCHES, BATCH_SIZE = 2, 8

TIMM = """resnet18 resnet50 resnet26d resnet10t resnext26ts seresnet18 ecaresnet26t resnest14d skresnet18
res2net50_26w_4s dpn68b cspresnet50 cspdarknet53 darknet17 densenet121 vgg11_bn mobilenetv2_050
mobilenetv3_small_100 mobilenetv3_large_100 efficientnet_b0 efficientnet_lite0 efficientnetv2_rw_t
mnasnet_050 semnasnet_050 spnasnet_100 fbnetc_100 tinynet_e lcnet_050 hardcorenas_a mixnet_s
mobilenetv4_conv_small ghostnet_100 ghostnetv2_100 rexnet_100 regnetx_002 regnety_002 gernet_s
repvgg_a0 mobileone_s0 selecsls42b dla34 hrnet_w18_small ese_vovnet19b_dw hgnetv2_b0 inception_v3
xception41 nf_resnet26 convnext_atto convnextv2_atto edgenext_xx_small poolformer_s12 mobilevit_xxs
efficientformer_l1 levit_128s fastvit_t8 efficientvit_b0 vit_tiny_patch16_224 deit_tiny_patch16_224
pit_ti_224 tiny_vit_5m_224 swin_tiny_patch4_window7_224 maxvit_nano_rw_256 coatnet_nano_rw_224
resmlp_12_224 mixer_s16_224""".split()
TORCHVISION = """resnet18 resnet50 mobilenet_v2 mobilenet_v3_small shufflenet_v2_x0_5 mnasnet0_5
squeezenet1_1 efficientnet_b0 regnet_x_400mf regnet_y_400mf vgg11_bn googlenet alexnet""".split()
USER = ["ResNet20A", "LeNet5", "SplitNet", "VGG11"]

#: Input sizes other than the default 64 px: models whose own design fixes or floors the size.
PX = {
    "timm:inception_v3": 96,
    "timm:xception41": 96,
    "timm:swin_tiny_patch4_window7_224": 224,
    "timm:maxvit_nano_rw_256": 256,
    "timm:coatnet_nano_rw_224": 224,
    "timm:levit_128s": 224,
    "timm:efficientformer_l1": 224,
    "timm:tiny_vit_5m_224": 224,
    "timm:fastvit_t8": 64,
    "timm:mobilevit_xxs": 64,
    "torchvision:vit_b_16": 224,
    "torchvision:swin_t": 224,
    "torchvision:maxvit_t": 224,
    "torchvision:inception_v3": 299,
    "torchvision:alexnet": 64,
    "torchvision:googlenet": 64,
    "user:ResNet20A": 32,
    "user:LeNet5": 32,
    "user:SplitNet": 32,
    "user:VGG11": 32,
}
#: Models whose input size is a constructor argument (position embeddings, fixed grids).
IMG_SIZE_KWARG = ("vit_", "deit_", "pit_", "resmlp_", "mixer_")


def cases() -> list[str]:
    return [f"timm:{m}" for m in TIMM] + [f"torchvision:{m}" for m in TORCHVISION] + [f"user:{m}" for m in USER]


def px_of(name: str) -> int:
    return PX.get(name, 64)


def arch_kwargs(name: str) -> dict | None:
    model = name.partition(":")[2]
    if name.startswith("timm:") and model.startswith(IMG_SIZE_KWARG):
        return {"img_size": px_of(name)}
    return None


# ---------------------------------------------------------------------------------------- workers


def build(name: str):
    """The dense model the way each tool is given it (random init, 10 classes)."""
    import timm
    import torchvision

    source, _, model = name.partition(":")
    if source == "timm":
        return timm.create_model(model, num_classes=NUM_CLASSES, **(arch_kwargs(name) or {}))
    if source == "torchvision":
        return torchvision.models.get_model(model, num_classes=NUM_CLASSES)
    sys.path.insert(0, str(HERE))
    from user_nets import USER_NETS

    return USER_NETS[model](num_classes=NUM_CLASSES)


def scoring_seconds(name: str, passes: int) -> float:
    """Wall time of ``passes`` forward + backward passes of the dense model on one batch (median of 3)."""
    import torch

    torch.manual_seed(0)
    model = build(name).train()
    x = torch.randn(BATCH_SIZE, 3, px_of(name), px_of(name))
    y = torch.randint(0, NUM_CLASSES, (BATCH_SIZE,))
    times = []
    for _ in range(4):
        start = time.perf_counter()
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out  # GoogLeNet's train-mode aux outputs
        torch.nn.functional.cross_entropy(out, y).backward()
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    return times[1] * passes


def snipit_case(name: str, sparsity: float) -> dict:
    import torch

    from snipit_cli import load_model
    from snipit_cli.data.build import DataOptions
    from snipit_cli.data.specs import DataSpec
    from snipit_cli.errors import SnipitError
    from snipit_cli.pruning.structured.options import StructuredOptions
    from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

    px = px_of(name)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec, arch = name, None
        if name.startswith("user:"):
            spec = str(folder / "model.pt")
            arch = f"{USER_NETS}:{name.partition(':')[2]}"
            torch.manual_seed(0)
            torch.save(build(name).state_dict(), spec)
        request = PruneRequest(
            model=ModelOptions(
                spec, arch=arch, num_classes=NUM_CLASSES, input_size=(3, px, px), arch_kwargs=arch_kwargs(name)
            ),
            data=DataOptions(DataSpec("synthetic"), folder, batch_size=BATCH_SIZE, batches=BATCHES),
            sparsity=sparsity,
            output=folder / "slim.safetensors",
            structured=StructuredOptions(),
        )
        start = time.perf_counter()
        try:
            outcome = run_prune(request)
        except SnipitError as exc:
            return {"status": "refused", "error": str(exc), "seconds": time.perf_counter() - start}
        seconds = time.perf_counter() - start
        report = outcome.report
        x = torch.randn(2, 3, px, px, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = outcome.model.eval()(x)
            reloaded = load_model(request.output, arch=arch)(x)
        identical = bool(torch.equal(expected, reloaded))
        passes = report["pruning"]["calibration"]["passes"]
    scoring = scoring_seconds(name, passes)
    slimmed = report["nodes"]["remaining"] < report["nodes"]["dense"]
    return {
        "status": "ok" if slimmed and identical else ("not slimmed" if not slimmed else "reload differs"),
        "nodes": [report["nodes"]["dense"], report["nodes"]["remaining"]],
        "params": [report["params"]["dense"], report["params"]["total"]],
        "macs": [report["macs"]["dense"], report["macs"]["remaining"]],
        "max_rel_diff": report["pruning"]["equivalence"]["max_rel_diff"],
        "reload_identical": identical,
        "kept_groups": report["pruning"]["limits"]["kept_groups"],
        "seconds": seconds,
        "scoring_seconds": scoring,
        "time_ratio": seconds / scoring,
    }


def torch_pruning_case(name: str, sparsity: float) -> dict:
    import torch
    import torch_pruning as tp
    from torch import nn

    px = px_of(name)
    torch.manual_seed(0)
    model = build(name).eval()
    example = torch.randn(1, 3, px, px)
    heads = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    ignored = [m for m in heads if getattr(m, "out_features", getattr(m, "out_channels", None)) == NUM_CLASSES]
    num_heads = {
        m.qkv: m.num_heads for m in model.modules() if isinstance(getattr(m, "qkv", None), nn.Linear) and hasattr(m, "num_heads")
    }
    start = time.perf_counter()
    dense_macs, dense_params = tp.utils.count_ops_and_params(model, example)
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=sparsity,
        ignored_layers=ignored,
        num_heads=num_heads,
    )
    pruner.step()
    for m in model.modules():  # as Torch-Pruning's timm ViT example does
        if isinstance(getattr(m, "qkv", None), nn.Linear) and m.qkv in pruner.num_heads:
            m.num_heads = pruner.num_heads[m.qkv]
            m.head_dim = m.qkv.out_features // (3 * m.num_heads)
    x = torch.randn(2, 3, px, px, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    seconds = time.perf_counter() - start
    if out.shape != (2, NUM_CLASSES):
        return {"status": "wrong output", "error": f"output shape {tuple(out.shape)}", "seconds": seconds}
    macs, params = tp.utils.count_ops_and_params(model, example)
    torch.manual_seed(0)
    fresh = build(name).eval()
    tp.load_state_dict(fresh, state_dict=tp.state_dict(model))
    with torch.no_grad():
        identical = bool(torch.equal(fresh(x), out))
    return {
        "status": "ok" if identical and params < dense_params else "reload differs" if not identical else "not slimmed",
        "params": [int(dense_params), int(params)],
        "macs": [int(dense_macs), int(macs)],
        "reload_identical": identical,
        "seconds": seconds,
    }


def worker(tool: str, name: str, sparsity: float) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("COVERAGE_THREADS", "2")))
    try:
        return (snipit_case if tool == "snipit" else torch_pruning_case)(name, sparsity)
    except Exception as exc:  # noqa: BLE001 (any exception is the finding)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        kind = "internal error" if tool == "snipit" else "error"
        return {"status": kind, "error": f"{type(exc).__name__}: {first}", "traceback": traceback.format_exc()[-3000:]}


# ---------------------------------------------------------------------------------------- driver


def run_model(name: str, tools: list[str], sparsities: list[float], timeout: float) -> dict:
    """All cases of one model in one process (one import of torch and timm); a crash or a
    timeout is recorded for the cases it left without a result."""
    command = [sys.executable, __file__, "--worker", name, ",".join(tools), ",".join(map(str, sparsities))]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        stdout, failure = done.stdout, None
        if done.returncode:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            failure = {"status": "crash", "error": f"exit {done.returncode}: {tail[:300]}"}
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        failure = {"status": "timeout", "error": f"over {timeout:.0f} s for the model's cases"}
    rows: dict = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            rows.setdefault(row.pop("tool"), {})[row.pop("sparsity")] = row
    for tool in tools:
        for sparsity in map(str, sparsities):
            if sparsity not in rows.get(tool, {}):
                cell = dict(failure or {"status": "crash", "error": "no result"})
                cell["seconds"] = time.perf_counter() - start
                rows.setdefault(tool, {})[sparsity] = cell
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("NAME", "TOOLS", "SPARSITIES"), help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", default=None, help="case names (timm:resnet18, user:LeNet5)")
    parser.add_argument("--sparsities", nargs="*", type=float, default=[0.3, 0.6])
    parser.add_argument("--tools", nargs="*", default=["snipit", "torch-pruning"])
    parser.add_argument("--timeout", type=float, default=600, help="seconds for all cases of one model")
    parser.add_argument("--out", type=Path, default=RESULTS / "coverage.json")
    args = parser.parse_args()
    if args.worker:
        name, tools, sparsities = args.worker
        for sparsity in sparsities.split(","):
            for tool in tools.split(","):
                row = worker(tool, name, float(sparsity))
                print(json.dumps({"tool": tool, "sparsity": sparsity, **row}), flush=True)
        return
    names = args.only or cases()
    results = json.loads(args.out.read_text()) if args.only and args.out.exists() else {}
    rows = results.setdefault("cases", {})
    started = time.perf_counter()
    for name in names:
        rows[name] = run_model(name, args.tools, args.sparsities, args.timeout)
        for tool, cells in rows[name].items():
            for sparsity, row in cells.items():
                print(f"{name:40s} {sparsity} {tool:14s} {row['status']:15s} {row.get('seconds', 0):7.1f}s "
                      f"{row.get('error', '')[:120]}", file=sys.stderr, flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    import torch

    results["setup"] = {
        "torch": torch.__version__,
        "threads": int(os.environ.get("COVERAGE_THREADS", "2")),
        "cpu": platform.processor() or platform.machine(),
        "batches": BATCHES,
        "batch_size": BATCH_SIZE,
        "sparsities": args.sparsities,
        "command": "python benchmarks/coverage.py " + " ".join(sys.argv[1:]),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(results, indent=1))
    (args.out.with_suffix(".md")).write_text(render(results))


def _ok(cell: dict | None) -> bool:
    return bool(cell) and cell.get("status") == "ok"


def render(results: dict) -> str:
    rows, setup = results["cases"], results.get("setup", {})
    sparsities = [str(s) for s in setup.get("sparsities", [0.3, 0.6])]
    lines = [
        f"# Structured coverage: snipit vs Torch-Pruning MetaPruner ({len(rows)} architectures)",
        "",
        f"Random init, {setup.get('batches')} x {setup.get('batch_size')} synthetic images, 64 px unless noted, "
        f"torch {setup.get('torch')}, {setup.get('threads')} threads; node (channel) sparsity "
        f"{', '.join(sparsities)}. snipit passes when the slim model's equivalence check held and the "
        "written file reloads with bit-identical outputs; Torch-Pruning when `step()` ran, the forward "
        "gives the right shape and `tp.load_state_dict` reproduces it. `ratio` is snipit's wall time "
        "over the time of its own scoring passes.",
        "",
    ]
    totals = {tool: {s: 0 for s in sparsities} for tool in ("snipit", "torch-pruning")}
    internal = 0
    for tool in totals:
        for s in sparsities:
            totals[tool][s] = sum(_ok(r.get(tool, {}).get(s)) for r in rows.values())
    internal = sum(
        1 for r in rows.values() for c in r.get("snipit", {}).values() if c.get("status") in ("internal error", "crash")
    )
    n = len(rows)
    lines.append("| | " + " | ".join(f"passes at {s}" for s in sparsities) + " |")
    lines.append("|---|" + "---|" * len(sparsities))
    for tool, by in totals.items():
        lines.append(f"| {tool} | " + " | ".join(f"{by[s]}/{n} ({by[s] / n:.0%})" for s in sparsities) + " |")
    lines += ["", f"snipit internal errors: {internal}.", ""]
    head = "| model | px | " + " | ".join(
        f"snipit {s}: MACs slim/dense, params | ratio | TP {s}" for s in sparsities
    ) + " |"
    lines += [head, "|---|---|" + "---|---|---|" * len(sparsities)]
    notes = []
    for name, r in rows.items():
        cells = []
        for s in sparsities:
            sn, tpc = r.get("snipit", {}).get(s, {}), r.get("torch-pruning", {}).get(s, {})
            if _ok(sn):
                kept = f", {len(sn['kept_groups'])} kept" if sn.get("kept_groups") else ""
                cells.append(
                    f"{sn['macs'][1] / sn['macs'][0]:.2f}, {sn['params'][1] / sn['params'][0]:.2f}{kept}"
                )
                cells.append(f"{sn['time_ratio']:.1f}")
            else:
                cells += [f"**{sn.get('status', '-')}**", "-"]
                notes.append(f"- {name} @ {s}, snipit: {sn.get('status')}: {sn.get('error', '')}")
            cells.append("ok" if _ok(tpc) else f"{tpc.get('status', '-')}")
            if not _ok(tpc):
                notes.append(f"- {name} @ {s}, Torch-Pruning: {tpc.get('status')}: {tpc.get('error', '')[:200]}")
        lines.append(f"| {name} | {px_of(name)} | " + " | ".join(cells) + " |")
    kept = sorted(
        {f"- {name}: {g}" for name, r in rows.items() for c in r.get("snipit", {}).values() for g in c.get("kept_groups", [])}
    )
    lines += ["", "## Failures", "", *(notes or ["none"]), "", "## Groups snipit kept dense", "", *(kept or ["none"])]
    lines += ["", f"Command: `{setup.get('command')}` ({setup.get('wall_seconds')} s wall)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
