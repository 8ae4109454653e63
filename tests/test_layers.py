"""The package's import graph flows one way (``tools/import_graph.py``): no cycle between its
parts and no arrow up a layer (cli -> workflows -> session/documents -> domain -> base)."""

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_parts_import_each_other_without_a_cycle():
    tool = _tool()
    assert tool.cycles(tool.graph()) == []


def test_no_import_points_up_a_layer():
    tool = _tool()
    assert tool.violations(tool.graph()) == []


def test_the_graph_sees_the_arrows_the_layering_is_about():
    """The checks above would pass on an empty graph: the tool must see real imports, e.g. the
    engines calling the criteria and everyone reading the base modules."""
    edges = _tool().graph()
    assert "pruning.engine -> criteria.base" in edges[("pruning", "criteria")]
    assert ("criteria", "pruning") not in edges and ("metrics", "pruning") not in edges
    assert {("criteria", "types"), ("data", "types"), ("parallel", "sync")} <= edges.keys()


def test_no_command_module_imports_another():
    """cli/train does not reach into cli/prune, nor workflows/train into workflows/prune: what two
    commands share lives lower (cli.options/parsing, workflows.session, workflows.documents)."""
    assert _tool().siblings() == []
