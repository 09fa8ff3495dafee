"""``permutations=N``: the whole pipeline retrained N times on labels permuted the way the people were sampled.

Each permutation (:func:`facediag.scoring.permutation.permute_labels`, ``auto``: by person when every person has
one label, within person for a state of the photo such as expression) relabels the split's photos; the people keep
their roles (train / val / test), and the strategy fits again from the same crops and seed: its own choices on
validation, training and scoring, on the permuted labels. The permuted test accuracies are the null distribution of
the method's; each retraining's predictions.csv (with its permuted labels) is kept in ``permutations/<i>/``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl

from facediag.preprocess.faces import Faces
from facediag.scoring.permutation import (
    AUTO,
    PERMUTATIONS_DIR,
    PermutationResult,
    permutation_of_run,
    permutation_scheme,
    permute_labels,
)

log = logging.getLogger(__name__)


def relabelled(faces: Callable[..., Faces], labels: dict[str, str]) -> Callable[..., Faces]:
    """A job's ``faces`` source whose rows carry the permuted ``labels`` (by path)."""

    def relabel(*args: Any, **kwargs: Any) -> Faces:
        found = faces(*args, **kwargs)
        return dataclasses.replace(found, rows=found.rows.assign(label=found.rows["path"].map(labels)))

    return relabel


def run_permutations(strategy: Any, job: Any, predictions: pd.DataFrame, n: int, scheme: str = AUTO
                     ) -> dict[str, PermutationResult]:
    """Fit ``strategy`` on ``n`` permutations of the job's labels (seeded by the run's seed); {variant: the
    method's test accuracy against the permuted retrainings'} (what metrics.json records under ``permutation``)."""
    split = job.split
    labels, subjects = split["label"].astype(str).to_numpy(), split["subject"].astype(str).to_numpy()
    scheme = permutation_scheme(labels, subjects) if scheme == AUTO else scheme
    for i, permuted in enumerate(permute_labels(labels, subjects, n, seed=job.seed, scheme=scheme)):
        out_dir = job.out_dir / PERMUTATIONS_DIR / str(i)
        out_dir.mkdir(parents=True, exist_ok=True)
        by_path = dict(zip(split["path"], permuted, strict=True))
        sub = dataclasses.replace(job, out_dir=out_dir, split=split.assign(label=permuted), tb_logger=None, info={},
                                  faces=relabelled(job.faces, by_path))
        pl.seed_everything(job.seed, workers=True)  # every retraining starts where the method's did
        predictor = strategy.fit(sub)
        predictor.predictions.to_csv(out_dir / "predictions.csv", index=False)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the scores are what the test needs
        moved = float(np.mean(permuted != labels))
        log.info("permutation %d/%d (%s, %.0f%% of the labels moved) done", i + 1, n, scheme, 100 * moved)
    return permutation_of_run(job.out_dir, predictions, scheme, job.seed)
