"""Run results, one code path for every strategy: predictions.csv, metrics.json, figures, TensorBoard."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.labels import class_index

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["path", "subject", "label", "pred", "role", "variant"]
#: columns of a run's CSV files (predictions, split, manifest) read back as the text they hold: a person ``033`` or a
#: class folder ``01`` is not a number (``pd.read_csv(..., dtype=TEXT_COLUMNS)``)
TEXT_COLUMNS = {"path": str, "subject": str, "label": str, "pred": str}
DISCLAIMER = "Research tool, not a diagnosis."
FAILED = "FAILED"  # present in a run dir whose job failed: the exception text
RUN_CONFIG = "run_config.yaml"  # the resolved config of a run: what evaluation and prediction rebuild it from


def score_columns(classes: Sequence[str]) -> list[str]:
    """Names of the per-class score columns of predictions.csv."""
    return [f"score_{c}" for c in classes]


def prediction_frame(rows: pd.DataFrame, scores: np.ndarray, classes: Sequence[str], variant: str) -> pd.DataFrame:
    """`path,subject,label,pred,role,variant,score_<class>...` for ``rows`` (split rows) and their scores."""
    scores = np.asarray(scores, dtype=np.float64)
    frame = rows[["path", "subject", "label", "role"]].reset_index(drop=True).copy()
    frame.insert(3, "pred", [classes[i] for i in scores.argmax(axis=1)])
    frame["variant"] = variant
    return pd.concat([frame, pd.DataFrame(scores, columns=score_columns(classes))], axis=1)


def metrics_for(
    predictions: pd.DataFrame, classes: Sequence[str], positive: str | None, role: str = "test"
) -> dict[str, Any]:
    """classification_metrics of the ``role`` rows of one variant's predictions; intervals resample the
    people of the ``subject`` column (each row its own person when the column is absent)."""
    from facediag.scoring.metrics import classification_metrics  # scipy.stats: not needed to apply a run

    part = predictions[predictions["role"] == role]
    y_true, scores = targets_and_scores(part, classes)
    return classification_metrics(y_true, scores, classes, positive, groups=subjects_of(part))


def targets_and_scores(predictions: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(class index of every row's label, its (N, C) float64 score columns) of a predictions frame."""
    y_true = predictions["label"].map(class_index(classes)).to_numpy()
    return y_true, predictions[score_columns(classes)].to_numpy(dtype=np.float64)


def subjects_of(predictions: pd.DataFrame) -> np.ndarray | None:
    """The person of every prediction row (``subject`` column; an empty subject is its own image's person)."""
    if "subject" not in predictions.columns:
        return None
    subjects = predictions["subject"].astype(object)
    missing = subjects.isna().to_numpy()
    return np.where(missing, "image:" + predictions["path"].astype(str), subjects.astype(str)).astype(str)


def summarize(
    predictions: pd.DataFrame, classes: Sequence[str], positive: str | None, info: Mapping[str, Any]
) -> dict[str, Any]:
    """metrics.json content: the first variant's test metrics at top level, every variant under `variants`.

    ``info["variant_info"]`` (optional, {variant: {key: value}}) holds what differs between the variants of
    one run (DSIFT: each SVM's C and validation score); it is merged into that variant's block.
    """
    info = dict(info)
    variant_info = info.pop("variant_info", None) or {}
    variants = {}
    for variant in dict.fromkeys(predictions["variant"]):
        metrics = metrics_for(predictions[predictions["variant"] == variant], classes, positive)
        variants[variant] = {**info, **variant_info.get(variant, {}), "variant": variant, **metrics}
    first = next(iter(variants.values()))
    return {**first, "variants": variants, "disclaimer": DISCLAIMER}


def write_results(
    out_dir: str | Path,
    predictions: pd.DataFrame,
    classes: Sequence[str],
    positive: str | None,
    info: Mapping[str, Any],
    tb_logger: Any = None,
) -> dict[str, Any]:
    """Write predictions.csv, metrics.json and confusion_matrix.png; log them to TensorBoard when given."""
    from facediag.scoring.plots import plot_confusion_matrix

    out_dir = Path(out_dir)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    summary = summarize(predictions, classes, positive, info)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=to_json))
    for name, metrics in summary["variants"].items():
        png = out_dir / ("confusion_matrix.png" if name == summary["variant"] else f"confusion_matrix_{name}.png")
        title = f"{info.get('backbone') or info.get('strategy')} {name}: accuracy {metrics['accuracy']:.3f}"
        plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), list(classes), png, title=title)
        if tb_logger is not None:
            _log_image(tb_logger, f"confusion_matrix/{name}", png)
    if tb_logger is not None:
        log_hparams(tb_logger, summary)
    return summary


HPARAM_KEYS = (
    "task",
    "dataset",
    "backbone",
    "weights",
    "strategy",
    "variant",
    "fold",
    "split_seed",
    "n_train",
    "n_test",
    "macs",
    "params",
)
HPARAM_METRICS = ("accuracy", "balanced_accuracy", "f1", "auc", "sensitivity", "specificity", "precision")


def log_hparams(tb_logger: Any, summary: Mapping[str, Any]) -> None:
    """Test scalars of every variant, and one hparams entry (the run's configuration + final metrics)."""
    metrics: dict[str, float] = {}
    for name, variant in summary["variants"].items():
        suffix = "" if name == summary["variant"] else f"_{name}"
        for key in HPARAM_METRICS:
            if variant.get(key) is not None:
                metrics[f"hp/{key}{suffix}"] = float(variant[key])
                tb_logger.log_metrics({f"test/{key}/{name}": float(variant[key])}, step=0)
    hparams = {k: ("none" if summary.get(k) is None else summary[k]) for k in HPARAM_KEYS if k in summary}
    tb_logger.log_hyperparams(hparams, metrics=metrics)
    tb_logger.experiment.flush()


def _log_image(tb_logger: Any, tag: str, png: Path) -> None:
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB"))
    tb_logger.experiment.add_image(tag, image, 0, dataformats="HWC")


def to_json(value: Any) -> Any:
    """json.dumps fallback for numpy scalars / arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
