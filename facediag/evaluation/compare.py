"""Honest comparisons within one results table: the row to report is chosen on validation, every other
row is tested against it on the same test images (paired), with Holm-adjusted p-values.

Selection rule (never a test number):

* Across rows, the **validation accuracy** (metrics.json ``val_accuracy``) decides: an estimate of the
  accuracy on unseen people made without the test part, which every strategy records in the same unit.
  DTL2 / DSIFT: the person-grouped CV accuracy on the training part at the chosen C (= ``val_score``);
  DTL1: the best checkpoint's accuracy on the validation split (``val_score`` there is minus the best
  validation loss, a different scale, so it is never compared with an accuracy). The validation split of
  DTL1 also picked its checkpoint, so its estimate is slightly optimistic; ``val_source`` says which it is.
  A CV row's value is the mean over its folds. Ties go to the cheaper model (fewer MACs), then table order.
  Rows without a validation accuracy (older runs) cannot be chosen.
* **A shortcut cannot win the choice**: a run that trained controls (facediag.training.controls: the same method
  shown no face) is scored by its validation accuracy minus what its best control earns above chance on the same
  validation (``val_accuracy - max(0, control val_accuracy - val_chance)``, all inside the training part): a design
  whose validation accuracy a face-blind reader also reaches gains nothing from it. The penalty is shown in the
  table; runs without controls (older runs) are not penalised, so mix them only knowingly.
* **Hyper-parameter trials** (an Optuna sweep: rows of one method differing only in the searched
  setting) are reduced to the trial with the best ``val_score``, the value Optuna maximised; the other
  trials are listed with their validation scores only, so a test score is shown once, for the chosen trial.

Comparison: every other row against the chosen one on the images both scored (same split seed and path),
per person (facediag.scoring.stats.paired_comparison: McNemar's exact test on discordant people, paired bootstrap
interval of the accuracy difference), Holm-adjusted over the rows of the table. "Not clearly different"
means a Holm-adjusted p >= ALPHA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from facediag.scoring.results import score_columns, subjects_of
from facediag.scoring.stats import holm, paired_comparison

ALPHA = 0.05


def _stored_block(row: Any, entry: Any) -> dict[str, Any]:
    stored = (entry.run.stored_metrics or {}) if entry.run is not None else {}
    return {**stored, **((stored.get("variants") or {}).get(row.variant) or {})}


def _val_score_is_accuracy(strategy: str | None) -> bool:
    """Whether a strategy's ``val_score`` is already a grouped-CV accuracy (its class's ``val_score_is_accuracy``)."""
    from facediag.strategies.registry import trait

    return bool(strategy) and bool(trait({"name": strategy}, "val_score_is_accuracy", False))


def validation_value(row: Any, key: str = "val_accuracy", penalised: bool = True) -> float | None:
    """The row's validation ``key`` (mean over its folds), for ``val_accuracy`` less the control penalty
    (:func:`control_penalty`) unless ``penalised`` is false; None when any fold lacks it."""
    values = []
    for entry in row.entries:
        block = _stored_block(row, entry)
        value = block.get(key)
        if value is None and key == "val_accuracy" and _val_score_is_accuracy(block.get("strategy")):
            value = block.get("val_score")  # runs from before val_accuracy was recorded
        if value is None:
            return None
        if key == "val_accuracy" and penalised:
            value = float(value) - control_penalty(block, row.variant)
        values.append(float(value))
    return float(np.mean(values)) if values else None


def control_penalty(block: dict[str, Any], variant: str | None) -> float:
    """What the run's best control earns above chance on validation (0 without controls)."""
    gains = [float(c["val_accuracy"]) - float(c["val_chance"])
             for by_variant in (block.get("controls") or {}).values()
             for c in [by_variant.get(variant) or {}] if c.get("val_accuracy") is not None]
    return max([0.0, *gains])


def row_penalty(row: Any) -> float | None:
    """The mean control penalty over the row's folds (None when no fold trained controls)."""
    blocks = [_stored_block(row, e) for e in row.entries]
    if not any(b.get("controls") for b in blocks):
        return None
    return float(np.mean([control_penalty(b, row.variant) for b in blocks]))


def validation_source(row: Any) -> str:
    """Where the row's validation accuracy comes from (metrics.json ``val_source``)."""
    for entry in row.entries:
        source = _stored_block(row, entry).get("val_source")
        if source:
            return str(source)
    return ""


def _macs(row: Any) -> float:
    stored = (row.entries[0].run.stored_metrics or {}) if row.entries[0].run is not None else {}
    return float(stored.get("macs") or 0.0)


def choose_on_validation(rows: Sequence[Any], key: str = "val_accuracy") -> Any | None:
    """The ok row with the highest validation ``key`` (ties: fewer MACs, then order); None if none has one."""
    candidates = [(validation_value(r, key), i, r) for i, r in enumerate(rows) if not r.failed]
    candidates = [(v, i, r) for v, i, r in candidates if v is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], -_macs(c[2]), -c[1]))[2]


def correctness(row: Any) -> pd.DataFrame:
    """Per test image of the row: split_seed, path, subject, correct (argmax of the scores == label)."""
    frame = row.predictions
    classes = list(next(e.run.classes for e in row.entries if e.run is not None))
    predicted = np.asarray(classes)[frame[score_columns(classes)].to_numpy().argmax(axis=1)]
    seeds = frame["split_seed"] if "split_seed" in frame.columns else pd.Series(0, index=frame.index)
    subjects = subjects_of(frame)
    return pd.DataFrame({
        "split_seed": seeds.astype(str).to_numpy(),
        "path": frame["path"].astype(str).to_numpy(),
        "subject": subjects if subjects is not None else frame["path"].astype(str).to_numpy(),
        "correct": predicted == frame["label"].astype(str).to_numpy(),
    })


def compare_rows(rows: Sequence[Any], chosen: Any) -> None:
    """Set ``comparison`` (facediag.scoring.stats.PairedComparison), ``n_paired`` and ``p_holm`` of every ok row
    against ``chosen`` (rows sharing no test image with it get ``comparison`` None)."""
    base = correctness(chosen)
    compared = []
    for row in rows:
        row.comparison, row.p_holm, row.n_paired = None, None, 0
        if row.failed or row is chosen or row.predictions is None:
            continue
        merged = base.merge(correctness(row), on=["split_seed", "path"], suffixes=("_chosen", ""))
        row.n_paired = len(merged)
        if merged.empty:
            continue
        row.comparison = paired_comparison(merged["correct"], merged["correct_chosen"], merged["subject_chosen"])
        compared.append(row)
    for row, adjusted in zip(compared, holm([r.comparison.p_value for r in compared]), strict=True):
        row.p_holm = adjusted
