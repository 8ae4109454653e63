"""``snipit train``: the request (``request``), the run (``run``), resuming (``resume``) and pruning
while training (``pruning``), one module each."""

from snipit_cli.workflows.train.request import PruneWhileTraining, TrainOutcome, TrainRequest
from snipit_cli.workflows.train.run import run_train

__all__ = ["PruneWhileTraining", "TrainOutcome", "TrainRequest", "run_train"]
