"""(level, name) -> criterion class, read by ``snipit prune --method`` and ``snipit methods``.

Weight-level and unit-level criteria live side by side; a name such as ``random`` can exist at
both levels, and ``--structured`` picks the level.
"""

from __future__ import annotations

import warnings
from fnmatch import fnmatchcase

from snipit_cli.criteria.base import Criterion, UnitCriterion
from snipit_cli.errors import UsageError

AnyCriterion = type[Criterion] | type[UnitCriterion]
_REGISTRY: dict[tuple[str, str], AnyCriterion] = {}


def register_criterion(cls: AnyCriterion) -> AnyCriterion:
    """Class decorator adding a criterion under ``(cls.level, cls.name)``; warns on reuse."""
    key = (cls.level, cls.name)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        warnings.warn(f"criterion {cls.name!r} registered twice; the later one wins", stacklevel=2)
    _REGISTRY[key] = cls
    return cls


def list_criteria(pattern: str = "*", level: str | None = None) -> list[AnyCriterion]:
    """Registered criteria whose name matches ``pattern`` (and ``level``), in registration order."""
    return [
        cls for (lvl, name), cls in _REGISTRY.items() if fnmatchcase(name, pattern) and level in (None, lvl)
    ]


def get_criterion(name: str, level: str = "weights") -> AnyCriterion:
    """The criterion class for ``name`` at ``level``, or a usage error listing the known names."""
    try:
        return _REGISTRY[(level, name)]
    except KeyError:
        known = ", ".join(n for lvl, n in _REGISTRY if lvl == level)
        other = "--structured" if level == "weights" else "no --structured"
        hint = f" ({name} is a method for {other})" if any(n == name for _, n in _REGISTRY) else ""
        raise UsageError(
            f"unknown method {name!r}{hint}; choose one of: {known} (see `snipit methods`)"
        ) from None


def create_criterion(name: str, level: str = "weights") -> Criterion | UnitCriterion:
    """A fresh instance of the criterion registered as ``name`` at ``level``."""
    return get_criterion(name, level)()
