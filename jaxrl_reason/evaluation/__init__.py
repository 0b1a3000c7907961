"""Evaluation of trained runs: held-out accuracy, the test-time compute sweep, PRM fitting."""

from jaxrl_reason.evaluation.heldout import evaluate
from jaxrl_reason.evaluation.prm_fit import fit_prm
from jaxrl_reason.evaluation.sweep import sweep, sweep_workdir

__all__ = ["evaluate", "fit_prm", "sweep", "sweep_workdir"]
