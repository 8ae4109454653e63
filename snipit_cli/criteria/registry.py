"""Name -> criterion class, read by ``snipit prune --method`` and ``snipit methods``."""

from __future__ import annotations

import warnings
from fnmatch import fnmatchcase

from snipit_cli.criteria.base import Criterion
from snipit_cli.errors import UsageError

_REGISTRY: dict[str, type[Criterion]] = {}


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator adding a criterion under ``cls.name``; warns when a name is reused."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        warnings.warn(f"criterion {cls.name!r} registered twice; the later one wins", stacklevel=2)
    _REGISTRY[cls.name] = cls
    return cls


def list_criteria(pattern: str = "*") -> list[type[Criterion]]:
    """Registered criteria whose name matches ``pattern``, in registration order."""
    return [cls for name, cls in _REGISTRY.items() if fnmatchcase(name, pattern)]


def get_criterion(name: str) -> type[Criterion]:
    """The criterion class for ``name``, or a usage error listing the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise UsageError(f"unknown method {name!r}; choose one of: {known} (see `snipit methods`)") from None


def create_criterion(name: str) -> Criterion:
    """A fresh instance of the criterion registered as ``name``."""
    return get_criterion(name)()
