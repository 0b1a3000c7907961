"""A run directory and what reads or writes it: checkpoints, metrics, the playable Agent, PRM files."""

from jaxrl_reason.run.agent import METHODS, Agent, test_time_search
from jaxrl_reason.run.checkpoint import Checkpointer, CheckpointError
from jaxrl_reason.run.metrics import MetricsWriter, plot_learning_curves, read_metrics
from jaxrl_reason.run.prm_io import load_prm, save_prm
from jaxrl_reason.run.sampling import sample_responses

__all__ = [
    "METHODS",
    "Agent",
    "CheckpointError",
    "Checkpointer",
    "MetricsWriter",
    "load_prm",
    "plot_learning_curves",
    "read_metrics",
    "sample_responses",
    "save_prm",
    "test_time_search",
]
