"""Training: the host loop (``python -m jaxrl_reason.train``) and one module per algorithm's collect + update."""

from jaxrl_reason.training.algorithm import ALGORITHMS, Algorithm, BuildContext, get_algorithm
from jaxrl_reason.training.loop import KILL_AT_STEP_ENV, TrainFns, make_train_fns, train
from jaxrl_reason.training.state import TrainingError, TrainState, build_model, build_optimizer, init_state

__all__ = [
    "ALGORITHMS",
    "KILL_AT_STEP_ENV",
    "Algorithm",
    "BuildContext",
    "TrainFns",
    "TrainState",
    "TrainingError",
    "build_model",
    "build_optimizer",
    "get_algorithm",
    "init_state",
    "make_train_fns",
    "train",
]
