"""Scoring criteria behind one interface and a registry (``snipit methods`` lists them)."""

from snipit_cli.criteria.base import Criterion, ScoringContext, UnitCriterion, UnitScoringContext
from snipit_cli.criteria.registry import (
    create_criterion,
    get_criterion,
    list_criteria,
    register_criterion,
)

# Importing the modules registers the built-in criteria.
from snipit_cli.criteria import snip, magnitude, random_, grasp, synflow, snap  # noqa: E402,F401  isort: skip

__all__ = [
    "Criterion",
    "ScoringContext",
    "UnitCriterion",
    "UnitScoringContext",
    "create_criterion",
    "get_criterion",
    "list_criteria",
    "register_criterion",
]
