"""Print snipit_cli's import graph between its parts, the arrows that break the layering, and the
lines of every module.

    python tools/import_graph.py            # the graph, cycles and layer violations (markdown)
    python tools/import_graph.py --lines    # plus the lines-per-module table
    python tools/import_graph.py --check    # exit 1 on an upward arrow, a cycle, sibling commands

Imports are read from the source (``ast``), function-local ones included, so the graph is what the
code can import, not what one run happened to. The layers, top to bottom, are those of
``../shared/STYLE.md``: cli -> workflows -> session/documents -> the domain packages (models, data,
criteria, pruning, metrics, training; acyclic among themselves) -> the base modules (errors, types,
sync, fileio, parallel).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "snipit_cli"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

#: Layer of each part: an import may point to its own layer (domain packages, if acyclic) or lower.
LAYERS = {
    "__main__": 6, "__init__": 6,
    "cli": 5,
    "workflows": 4,
    "session": 3, "documents": 3,
    "models": 2, "data": 2, "criteria": 2, "pruning": 2, "metrics": 2, "training": 2,
}  # fmt: skip
BASE = 0  # every other top-level module: errors, types, sync, fileio, parallel, ...
SPLIT = {"workflows.session": "session", "workflows.documents": "documents"}


def part_of(module: str) -> str:
    """The part a dotted module (without the package prefix) belongs to."""
    for prefix, part in SPLIT.items():
        if module == prefix or module.startswith(prefix + "."):
            return part
    return module.split(".")[0]


def layer(part: str) -> int:
    return LAYERS.get(part, BASE)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """The snipit_cli modules ``module`` imports, without the package prefix."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join([PACKAGE, *base, *([node.module] if node.module else [])])]
            else:
                names = [node.module or ""]
            names += [f"{names[0]}.{a.name}" for a in node.names]
        for name in names:
            if name == PACKAGE:
                continue
            if name.startswith(PACKAGE + "."):
                out.add(name[len(PACKAGE) + 1 :])
    known = modules()
    # `from snipit_cli.models import loading` names a module; `from x.y import Name` the module x.y
    return {
        n if n in known else n.rpartition(".")[0]
        for n in out
        if (n in known) or (n.rpartition(".")[0] in known)
    }


def graph() -> dict[tuple[str, str], list[str]]:
    """(from part, to part) -> the module imports that make the arrow."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path in modules().items():
        for target in imports(module, path):
            a, b = part_of(module), part_of(target)
            if a != b:
                edges[(a, b)].append(f"{module} -> {target}")
    return dict(edges)


def cycles(edges) -> list[list[str]]:
    """Strongly connected parts (Tarjan): every list of two or more parts is a cycle."""
    succ = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted({p for e in edges for p in e}):
        if v not in index:
            visit(v)
    return out


def violations(edges) -> list[str]:
    """Arrows that point up a layer."""
    return [
        f"{a} (layer {layer(a)}) -> {b} (layer {layer(b)}): {', '.join(sorted(set(why))[:3])}"
        for (a, b), why in sorted(edges.items())
        if layer(b) > layer(a)
    ]


def siblings() -> list[str]:
    """Command modules importing each other (cli.X -> cli.Y, workflows.X -> workflows.Y): the
    shared piece belongs lower. ``cli.app`` wiring the commands and ``cli.options``/``cli.output``/
    ``cli.errors`` shared by all are the exceptions."""
    shared = {"cli.app", "cli.options", "cli.output", "cli.errors", "cli.parsing", "cli.formats", "cli.plots"}
    out = []
    for module, path in modules().items():
        part = part_of(module)
        if part not in ("cli", "workflows") or module in shared:
            continue
        for target in sorted(imports(module, path)):
            own = ".".join(module.split(".")[:2])  # a command split into a package: its own modules
            if target == own or target.startswith(own + "."):
                continue
            if part_of(target) == part and target != part and target not in shared:
                out.append(f"{module} -> {target}")
    return out


def lines_table() -> list[str]:
    rows = ["| module | lines |", "|---|---:|"]
    for module, path in sorted(modules().items(), key=lambda kv: -len(kv[1].read_text().splitlines())):
        rows.append(f"| `{module}` | {len(path.read_text(encoding='utf-8').splitlines())} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", action="store_true", help="also print lines per module")
    parser.add_argument("--check", action="store_true", help="exit 1 on a cycle or an upward arrow")
    args = parser.parse_args(argv)
    edges = graph()
    print("## Import graph (part -> part: imports)\n")
    for (a, b), why in sorted(edges.items(), key=lambda kv: (-layer(kv[0][0]), kv[0])):
        print(f"- {a} -> {b}: {len(why)}")
    found_cycles, found_up = cycles(edges), violations(edges)
    print("\n## Cycles\n")
    print("\n".join(f"- {' <-> '.join(c)}" for c in found_cycles) or "none")
    print("\n## Arrows up a layer\n")
    print("\n".join(f"- {v}" for v in found_up) or "none")
    found_siblings = siblings()
    print("\n## Command modules importing each other\n")
    print("\n".join(f"- {v}" for v in found_siblings) or "none")
    if args.lines:
        print("\n## Lines per module\n")
        print("\n".join(lines_table()))
    return 1 if args.check and (found_cycles or found_up or found_siblings) else 0


if __name__ == "__main__":
    sys.exit(main())
