"""``snipit prune`` as a library call (see :mod:`.run`)."""

from snipit_cli.workflows.prune.request import Finetune, PruneOutcome, PruneRequest
from snipit_cli.workflows.prune.run import run_prune
from snipit_cli.workflows.session import RUN_ONLY_KEYS, ModelOptions

__all__ = ["RUN_ONLY_KEYS", "Finetune", "ModelOptions", "PruneOutcome", "PruneRequest", "run_prune"]
