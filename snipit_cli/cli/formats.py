"""Rendering report and compare documents as rich tables, markdown and CSV.

One function turns a document into (headers, rows) per table; the three renderers share it, so
the terminal, markdown and CSV always show the same numbers.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.table import Table

Tables = list[tuple[str, list[str], list[list[str]]]]
#: report/compare's --format choices: the renderers here, and the JSON document itself.
FORMATS = ("table", "markdown", "csv", "json")
#: The blocks of a report document shown as "metric | value" rows, in this order.
SUMMARY_BLOCKS = ("params", "sparsity", "nodes", "macs", "file", "storage")
LAYER_COLUMNS = ["name", "type", "shape", "dense_shape", "params", "nonzero", "sparsity", "macs"]
CONNECTIVITY_COLUMNS = ["name", "units", "no_incoming", "unused_inputs"]


def _shape(value: Any) -> str:
    return "x".join(map(str, value)) if value else ""


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _input(model: dict[str, Any]) -> str:
    """``3x32x32, 10 classes``: what a model was measured on."""
    return f"{_shape(model['input_size'])}, {model['num_classes']} classes"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def _disconnected(block: dict[str, Any] | None) -> bool:
    return bool(block) and bool(block["no_incoming"] or block["unused_inputs"] or block["path"] is False)


def report_tables(doc: dict[str, Any]) -> Tables:
    """Totals (plus eval and latency), the disconnected layers when any, and the per-layer table
    of one report document (last, so CSV is the per-layer table)."""
    model = doc["model"]
    totals = [["input size", _input(model)]]
    for block in SUMMARY_BLOCKS:  # named as the JSON has them: params.total, macs.remaining, ...
        totals += [[f"{block}.{key}", _num(value)] for key, value in (doc[block] or {}).items()]
    if doc["eval"]:
        totals += [[f"eval {k}", _num(v)] for k, v in doc["eval"].items()]
    if doc["latency"]:
        for bs, t in doc["latency"]["batch_sizes"].items():
            totals.append([f"latency batch {bs} (ms)", f"{t['median_ms']:.3f} (iqr {t['iqr_ms']:.3f})"])
        totals.append(
            [
                "latency threads / device / runtime",
                f"{doc['latency']['threads']} / {doc['latency']['device']} / {doc['latency']['runtime']}",
            ]
        )
    connectivity = doc.get("connectivity")
    if _disconnected(connectivity):
        totals += [
            [f"connectivity.{key}", _yes_no(value) if key == "path" else _num(value)]
            for key, value in connectivity.items()
            if key != "layers"
        ]
    layers = [
        [r["name"], r["type"], _shape(r["shape"]), _shape(r.get("dense_shape")), str(r["params"]),
         str(r["nonzero"]), f"{r['sparsity']:.4f}", str(r["macs"])]
        for r in doc["layers"]
    ]  # fmt: skip
    tables: Tables = [(f"{model['source']}", ["metric", "value"], totals)]
    if _disconnected(connectivity) and connectivity["layers"]:
        rows = [[str(r[c]) for c in CONNECTIVITY_COLUMNS] for r in connectivity["layers"]]
        tables.append(("disconnected layers", CONNECTIVITY_COLUMNS, rows))
    return [*tables, ("layers", LAYER_COLUMNS, layers)]


def compare_tables(doc: dict[str, Any]) -> Tables:
    """One row per metric, one column per model, ratios to the first model beside each."""
    models, ratios = doc["models"], doc["ratios"]
    headers = ["metric", *(m["model"]["source"] for m in models)]

    def row(label: str, values: list[Any], ratio_key: str | None = None, word: str = "fewer") -> list[str]:
        cells = [label]
        for i, value in enumerate(values):
            cell = _num(value)
            ratio = ratios[i].get(ratio_key) if ratio_key else None
            if i and ratio:
                cell += f" ({ratio:.2f}x {word})"
            cells.append(cell)
        return cells

    rows = [
        ["input size", *(_input(m["model"]) for m in models)],
        row("params", [m["params"]["total"] for m in models], "params"),
        row("nonzero", [m["params"]["nonzero"] for m in models], "nonzero"),
        row("weight sparsity", [m["sparsity"]["weights"] for m in models]),
        row("MACs", [m["macs"]["remaining"] for m in models], "macs"),
        row("file size (bytes)", [(m["file"] or {}).get("size") for m in models], "file_size"),
        row(
            "file bytes per parameter",
            [(m["file"] or {}).get("bytes_per_param") for m in models],
            "bytes_per_param",
        ),
        row("dense tensors (bytes)", [(m["file"] or {}).get("dense_size") for m in models]),
        row("file / dense", [(m["file"] or {}).get("to_dense") for m in models]),
        row("storage", [(m["storage"] or {}).get("encoding") for m in models]),
        row("disconnected units", [_disconnected_units(m.get("connectivity")) for m in models]),
        ["input-to-output path", *(_yes_no((m.get("connectivity") or {}).get("path")) for m in models)],
    ]
    if all(m["eval"] for m in models):
        rows.append(row("top-1", [m["eval"]["top1"] for m in models]))
        rows.append(row("top-5", [m["eval"]["top5"] for m in models]))
        rows.append(row("loss", [m["eval"]["loss"] for m in models]))
    if all(m["latency"] for m in models):
        for bs in models[0]["latency"]["batch_sizes"]:
            cells = [f"latency batch {bs} (ms)"]
            for i, m in enumerate(models):
                t = m["latency"]["batch_sizes"].get(bs)
                speed = ratios[i].get("speedup", {}).get(bs)
                cell = f"{t['median_ms']:.3f}" if t else ""
                cells.append(cell + (f" ({speed:.2f}x faster)" if i and speed else ""))
            rows.append(cells)
        rows.append(["latency runtime", *(m["latency"]["runtime"] for m in models)])
    return [("compare", headers, rows)]


def _disconnected_units(block: dict[str, Any] | None) -> int | None:
    """Output units without inputs plus inputs read by no weight, summed over layers."""
    return block["no_incoming"] + block["unused_inputs"] if block else None


def rich_tables(tables: Tables) -> list[Table]:
    out = []
    for title, headers, rows in tables:
        table = Table(title=title, title_justify="left")
        for h in headers:
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        out.append(table)
    return out


def markdown(tables: Tables) -> str:
    parts = []
    for title, headers, rows in tables:
        lines = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def csv_text(tables: Tables) -> str:
    """The last table (per-layer for report, the comparison for compare) as CSV."""
    _, headers, rows = tables[-1]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()
