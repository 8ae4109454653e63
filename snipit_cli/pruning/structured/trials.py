"""Trial removals on a copy: does the model's own code survive losing units of a group?

torch-pruning couples the channels it can trace, but a forward pass may still fix a width in
code (``x.view(-1, 800)`` in classic LeNet-5 code) or mix channels through an op the graph does
not model (a channel flip). Such a group cannot be removed, only kept dense; a trial on a copy
finds it before any scoring, so the run keeps it whole instead of failing at the end.
"""

from __future__ import annotations

import copy
import itertools
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from snipit_cli.pruning.structured.engine import Slimmer, SlimView
from snipit_cli.pruning.structured.gates import gates_installed
from snipit_cli.pruning.structured.groups import UnitGraph, find_unit_groups
from snipit_cli.pruning.structured.surgery import remove_units

#: Largest relative max difference between the slim model and the gated original, in float64
#: (rounding stays near 1e-13 there, so anything above this is a coupling error, not arithmetic).
TOLERANCE = 1e-6
#: The same for a model whose code does not run in float64 (float32 rounding of a deep net
#: reaches 1e-5 on its own).
NATIVE_TOLERANCE = 1e-4


@contextmanager
def exact_arithmetic(
    models: Sequence[nn.Module], batch: torch.Tensor
) -> Iterator[tuple[torch.Tensor, float]]:
    """Run the comparisons in float64: ``models`` converted in place while the context is open
    (float32 -> float64 -> float32 is exact), yielding the batch to use and the tolerance.

    float32 rounding of a 50-layer net at random init reaches 1e-4 of the output by itself
    (GhostNet), which a tolerance cannot tell from a coupling error; in float64 it cannot hide
    one. Models with mixed float dtypes, or code that fixes a dtype, are compared as they are.
    """
    dtypes = {
        t.dtype for m in models for t in itertools.chain(m.parameters(), m.buffers()) if t.is_floating_point()
    }
    if len(dtypes) != 1 or batch.dtype not in dtypes:
        yield batch, NATIVE_TOLERANCE
        return
    (original,) = dtypes
    precise = batch.double()
    try:
        for m in models:
            m.double()
        with torch.no_grad():
            models[0](precise[:1])
    except Exception:  # noqa: BLE001 (the model's own code fixes a dtype: compare it as it is)
        for m in models:
            m.to(original)
        yield batch, NATIVE_TOLERANCE
        return
    try:
        yield precise, TOLERANCE
    finally:
        for m in models:
            m.to(original)


def relative_difference(out: torch.Tensor, reference: torch.Tensor) -> float:
    """Max |out - reference| over max |reference|; infinite when the shapes differ."""
    if out.shape != reference.shape:
        return float("inf")
    diff = float((out - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
    return diff if diff == diff else float("inf")  # NaN compares unequal to itself


def slim_copy(
    model: nn.Module,
    *,
    example: torch.Tensor,
    protected: Sequence[str],
    exclude: Sequence[str],
    gates_by_root: dict[str, torch.Tensor],
) -> nn.Module:
    """A copy of ``model`` with the units whose gate is 0 removed (groups matched by root name).

    The copy shares ``model``'s tensors: torch-pruning's surgery assigns sliced copies and never
    writes into a tensor, so only the modules are copied (a deep copy of VGG's 500 MB would
    dominate a trial). Do not train or write into the copy's kept tensors.
    """
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    trial = copy.deepcopy(model, shared)
    modules = dict(trial.named_modules())
    sub = find_unit_groups(trial, example=example, protected=[modules[n] for n in protected], exclude=exclude)
    pruned = [
        torch.nonzero(gates_by_root[g.root] == 0).flatten().tolist() if g.root in gates_by_root else []
        for g in sub.groups
    ]
    remove_units(trial, sub, pruned)
    return trial.eval()


def graph_copy(model: nn.Module, unit_graph: UnitGraph) -> tuple[nn.Module, UnitGraph]:
    """A copy of ``model`` with a copy of its traced graph, for surgery without a new trace.

    Tracing is what a trial costs (torch-pruning's group search takes 10 s on resnest14d, more
    than the surgery and the forwards together), and a trial removes the very groups it was
    given. The copy shares the tensors (see :func:`slim_copy`), the autograd nodes of the trace
    and torch-pruning's pruner objects (its handlers are compared by identity).
    """
    graph = unit_graph.graph
    shared: dict[int, object] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    for node in graph.module2node.values():
        shared[id(node.grad_fn)] = node.grad_fn
    for pruner in (*graph.REGISTERED_PRUNERS.values(), *graph.CUSTOMIZED_PRUNERS.values()):
        shared[id(pruner)] = pruner
    for value in vars(graph).values():  # the graph keeps torch-pruning's ``ops`` module
        if isinstance(value, types.ModuleType):
            shared[id(value)] = value
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 50 * len(graph.module2node) + 1000))  # the nodes link in chains
    try:
        trial, trial_graph, attention = copy.deepcopy((model, graph, unit_graph.attention), shared)
    finally:
        sys.setrecursionlimit(limit)
    return trial, UnitGraph(trial_graph, unit_graph.groups, list(unit_graph.kept), attention)


def slim_view(
    model: nn.Module,
    unit_graph: UnitGraph,
    *,
    example: torch.Tensor,
    protected: Sequence[str],
    exclude: Sequence[str],
) -> Slimmer:
    """Builds, for given gates, a copy of ``model`` without the gated-off units and its groups
    traced anew (about 0.1 s for resnet18 at 224 px, against passes at up to half the cost).

    ``None`` when the copy's groups do not line up one to one with the original's alive units
    (a group the copy's trace leaves out or cuts differently), or when the copy does not run
    (a width fixed in the model's code, found later by the trials): the step then scores the
    gated original, which is the same network.
    """

    def build(gates: list[torch.Tensor]) -> SlimView | None:
        trial, trial_graph = graph_copy(model, unit_graph)
        try:
            remove_units(trial, trial_graph, [torch.nonzero(g == 0).flatten().tolist() for g in gates])
            modules = dict(trial.eval().named_modules())
            traced = find_unit_groups(
                trial, example=example, protected=[modules[n] for n in protected], exclude=exclude
            )
        except Exception:  # noqa: BLE001 (the model's code fixes a width: the gated original still runs)
            return None
        by_root = {g.root: g for g in traced.groups}
        groups, alive = [], []
        for group, gate in zip(unit_graph.groups, gates, strict=True):
            kept = torch.nonzero(gate).flatten()
            match = by_root.get(group.root)
            if match is None or match.size != len(kept) or match.kind != group.kind:
                return None
            groups.append(match), alive.append(kept)
        return SlimView(trial, groups, alive)

    return build


def removal_failure(
    model: nn.Module,
    *,
    unit_graph: UnitGraph,
    gates: dict[int, torch.Tensor],
    batch: torch.Tensor,
    protected: Sequence[str],
    tolerance: float = NATIVE_TOLERANCE,
) -> str | None:
    """Why removing the zero-gated units of groups ``gates`` (by index) from a copy of ``model`` does
    not reproduce ``model`` with those gates; ``None`` when it does."""
    groups = unit_graph.groups
    full = [gates.get(i, torch.ones(g.size)) for i, g in enumerate(groups)]
    model.eval()
    try:
        with torch.no_grad():
            with gates_installed(model, groups, full):
                reference = model(batch)
            trial, trial_graph = graph_copy(model, unit_graph)
            pruned = [torch.nonzero(gate == 0).flatten().tolist() for gate in full]
            remove_units(trial, trial_graph, pruned)
            out = trial.eval()(batch)
    except Exception as exc:  # noqa: BLE001 (whatever the user's forward raises is the finding)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return f"the forward fails: {type(exc).__name__}: {first_line[:160]}"
    diff = relative_difference(out, reference)
    if diff > tolerance:
        return f"the output changes (relative difference {diff:.2e})"
    return None


def unremovable_groups(
    model: nn.Module, *, unit_graph: UnitGraph, probe: torch.Tensor, protected: Sequence[str]
) -> dict[int, str]:
    """Groups (by index) whose removal the model does not survive, with the reason.

    The trial removes the middle unit of every group (a slice ``x[:, :k]`` or ``x[:, -k:]`` would
    not notice the loss of the last or the first unit); see :func:`broken_groups`.
    """
    gates = {}
    for i, group in enumerate(unit_graph.groups):
        if group.size > 1:  # size 1 is never cut
            gates[i] = torch.ones(group.size)
            gates[i][group.size // 2] = 0.0
    return broken_groups(model, unit_graph=unit_graph, gates=gates, probe=probe, protected=protected)


def broken_groups(
    model: nn.Module,
    *,
    unit_graph: UnitGraph,
    gates: dict[int, torch.Tensor],
    probe: torch.Tensor,
    protected: Sequence[str],
) -> dict[int, str]:
    """Groups (by index into ``gates``) whose removal with these gates breaks the model, and why.

    One trial removes every group's zero-gated units at once; only when it fails are the groups
    bisected, so a model that is fine costs one trial and one with k bad groups about
    2k log2(groups). A failure no single group causes keeps all the groups of that trial whole.
    Trials run in float64 where the model allows (:func:`exact_arithmetic`).
    """
    candidates = [i for i, gate in gates.items() if not bool(gate.all())]
    broken: dict[int, str] = {}
    if not candidates:
        return broken
    with exact_arithmetic([model], probe) as (batch, tolerance):

        def trial(indices: list[int]) -> str | None:
            chosen = {i: gates[i] for i in indices}
            return removal_failure(
                model,
                unit_graph=unit_graph,
                gates=chosen,
                batch=batch,
                protected=protected,
                tolerance=tolerance,
            )

        def bisect(indices: list[int], failure: str | None) -> None:
            if failure is None:
                return
            if len(indices) == 1:
                broken[indices[0]] = failure
                return
            found = len(broken)
            for half in (indices[: len(indices) // 2], indices[len(indices) // 2 :]):
                bisect(half, trial(half))
            if len(broken) == found:  # only the combination fails
                broken.update({i: f"{failure}, together with the other groups of its trial" for i in indices})

        bisect(candidates, trial(candidates))
    return broken
