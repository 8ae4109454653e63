"""Exceptions that carry a user-facing message and an exit code.

The CLI's error boundary (``snipit_cli.cli.errors``) turns these into one line on stderr.
Library users catch :class:`SnipitError` and read ``str(exc)``.
"""

from __future__ import annotations


class SnipitError(Exception):
    """Base for every error snipit explains to its user; exit code 2 (bad usage or input)."""

    exit_code = 2


class UsageError(SnipitError):
    """An option value that cannot work (bad sparsity, malformed --input-size, ...)."""


class ModelError(SnipitError):
    """A model spec or checkpoint that cannot be resolved into an ``nn.Module``."""


class UnsafeCheckpointError(ModelError):
    """A checkpoint that can only be loaded by executing pickled code."""


class DataError(SnipitError):
    """A dataset that is missing, malformed or does not fit the model."""


class OutputError(SnipitError):
    """An output path that would overwrite something or cannot be written."""


class NumericsError(SnipitError):
    """NaN/Inf in the loss or the scores, or no gradient at all: the run cannot produce meaningful
    masks. Exit code 2 like other input errors: the model, data or options cause it."""
