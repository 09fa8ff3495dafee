"""Evaluation reports recomputed from run dirs: one run, a sweep, cross-validation pooling, subgroups.

Research tool, not a diagnosis.
"""

from facediag.evaluation.cv import FoldPredictions, PooledCV, configuration_key, pool_folds
from facediag.evaluation.runs import Run, RunDirError, find_run_dirs, load_run
from facediag.evaluation.single import evaluate_run
from facediag.evaluation.subgroups import subgroup_table
from facediag.evaluation.sweep import SweepResult, evaluate_sweep

__all__ = [
    "FoldPredictions",
    "PooledCV",
    "Run",
    "RunDirError",
    "SweepResult",
    "configuration_key",
    "evaluate_run",
    "evaluate_sweep",
    "find_run_dirs",
    "load_run",
    "pool_folds",
    "subgroup_table",
]
