"""What moved when a run meets another site: internal vs external metrics, a threshold-shift flag, the error
gallery, and re-thresholding on a small labelled, person-grouped part of the new site (reported apart).

Re-thresholding fits one offset per class on the log-probabilities of the calibration people (the first class's
offset fixed at 0; mean negative log-likelihood, scipy L-BFGS): for a binary task that is a move of the decision
threshold, for several classes a prior shift. The model itself is not refitted. The calibration people are drawn
at random (seeded) within each class and scored apart from the people the offsets are then tested on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.scoring.results import score_columns, subjects_of, summarize

COMPARED = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
#: the ranking transferred when the external AUC is at most this much below the internal one
AUC_HOLDS = 0.05
#: accuracy, sensitivity or specificity lower by more than this is a fall
FALL = 0.10
MAX_ERRORS = 24  # misclassified external photos drawn in the gallery


def undefined_rates(metrics: dict[str, Any]) -> set[str]:
    """The binary rates a set cannot measure: sensitivity without a photo of the positive class, specificity
    without one of the other (scikit-learn's convention writes 0 there, which would read as a collapse)."""
    positive, per_class = metrics.get("positive"), metrics.get("per_class") or {}
    if positive is None or positive not in per_class:
        return set()
    n_positive = int(per_class[positive].get("n") or 0)
    undefined = set() if n_positive else {"sensitivity"}
    return undefined | ({"specificity"} if n_positive == int(metrics.get("n") or 0) else set())


def internal_vs_external(internal: dict[str, Any], external: dict[str, Any]) -> pd.DataFrame:
    """One row per metric of :data:`COMPARED`: the run's own test value and the external one, with intervals
    (n/a where a set has no photo of a class the rate needs)."""
    rows = []
    unmeasured = {"internal": undefined_rates(internal), "external": undefined_rates(external)}
    for key in COMPARED:
        before = None if key in unmeasured["internal"] else internal.get(key)
        after = None if key in unmeasured["external"] else external.get(key)
        if before is None and after is None:
            continue
        rows.append({
            "metric": key,
            "internal": before,
            "internal_ci": internal.get(f"{key}_ci"),
            "external": after,
            "external_ci": external.get(f"{key}_ci"),
            "change": None if before is None or after is None else after - before,
        })
    return pd.DataFrame(rows)


def threshold_shift(table: pd.DataFrame) -> str | None:
    """A warning when the ranking held (external AUC within :data:`AUC_HOLDS` of the internal AUC) but accuracy,
    sensitivity or specificity fell by more than :data:`FALL`: the decision threshold did not transfer."""
    values = table.set_index("metric")
    if "auc" not in values.index or values.loc["auc", ["internal", "external"]].isna().any():
        return None
    auc_in, auc_out = float(values.loc["auc", "internal"]), float(values.loc["auc", "external"])
    if auc_out < auc_in - AUC_HOLDS:
        return None
    fell = [f"{m} {values.loc[m, 'internal']:.3f} -> {values.loc[m, 'external']:.3f}"
            for m in ("accuracy", "sensitivity", "specificity")
            if m in values.index and pd.notna(values.loc[m, "change"]) and values.loc[m, "change"] < -FALL]
    if not fell:
        return None
    return (f"threshold shift: the ranking held (AUC {auc_in:.3f} -> {auc_out:.3f}) but {', '.join(fell)}; the "
            "decision threshold does not transfer to this site: re-threshold on a few labelled people of it "
            "(evaluate.py ... recalibrate=<people per class>), reported apart")


def error_gallery(predictions: pd.DataFrame, crops: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                  png: Path, title: str) -> Path | None:
    """The misclassified photos (their aligned crops; ``crops[i]`` is ``predictions``' row i) with the true class,
    the class called (the prediction's) and its probability; None when there is no error."""
    from facediag.scoring.plots import image_grid, save_figure

    wrong = np.flatnonzero((predictions["label"] != predictions["pred"]).to_numpy())[:MAX_ERRORS]
    if wrong.size == 0:
        return None
    called = predictions["pred"].to_numpy()
    column = {c: k for k, c in enumerate(classes)}
    captions = [f"{Path(predictions['path'].iloc[i]).name[:22]}\ntrue {predictions['label'].iloc[i]}, called "
                f"{called[i]} (p {probabilities[i, column[called[i]]]:.2f})" for i in wrong]
    return save_figure(image_grid([crops[i] for i in wrong], captions, 6, title=title), png)


@dataclass
class Rethresholded:
    """Re-thresholding on part of the new site: the fitted offsets, who fitted them, and the others' metrics."""

    offsets: np.ndarray
    calibration_people: list[str]
    before: dict[str, Any]  # the held-out people with the run's own threshold
    after: dict[str, Any]  # the same people with the fitted offsets


def calibration_people(predictions: pd.DataFrame, people_per_class: int, seed: int) -> list[str]:
    """``people_per_class`` people drawn at random within each class (all of a person's photos go together);
    refuses when a class would keep no held-out person."""
    people = pd.DataFrame({"person": subjects_of(predictions), "label": predictions["label"].to_numpy()})
    people = people.drop_duplicates("person")
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for label, group in people.groupby("label", sort=True):
        if len(group) <= people_per_class:
            raise ValueError(f"recalibrate={people_per_class}: class {label} has {len(group)} people on the new "
                             "site; at least one must stay out of the calibration to test it")
        chosen += list(rng.choice(group["person"].to_numpy(), size=people_per_class, replace=False))
    return sorted(chosen)


def fit_offsets(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-class offsets on log-probabilities (class 0 fixed at 0) minimising the mean negative log-likelihood."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    logp = np.log(np.clip(probabilities, 1e-12, 1.0))

    def loss(free: np.ndarray) -> float:
        offsets = np.concatenate([[0.0], free])
        return float(-log_softmax(logp + offsets, axis=1)[np.arange(len(y)), y].mean() + 1e-4 * free @ free)

    fitted = minimize(loss, np.zeros(probabilities.shape[1] - 1), method="L-BFGS-B")
    return np.concatenate([[0.0], fitted.x])


def rethreshold(predictions: pd.DataFrame, probabilities: np.ndarray, classes: Sequence[str], positive: str | None,
                people_per_class: int, seed: int) -> Rethresholded:
    """Fit the offsets on ``people_per_class`` people per class of the new site and score the others before and
    after (``probabilities[i]`` belongs to ``predictions``' row i)."""
    chosen = calibration_people(predictions, people_per_class, seed)
    calibrating = np.isin(subjects_of(predictions), chosen)
    y = predictions["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    offsets = fit_offsets(probabilities[calibrating], y[calibrating])
    held_out = predictions[~calibrating].reset_index(drop=True)
    shifted = held_out.copy()
    logp = np.log(np.clip(probabilities[~calibrating], 1e-12, 1.0)) + offsets
    shifted[score_columns(classes)] = logp
    shifted["pred"] = [classes[i] for i in logp.argmax(axis=1)]
    own = held_out.copy()
    own[score_columns(classes)] = np.log(np.clip(probabilities[~calibrating], 1e-12, 1.0))
    info = {"task": "rethreshold"}
    return Rethresholded(
        offsets=offsets,
        calibration_people=chosen,
        before=summarize(own, classes, positive, info)["variants"][own["variant"].iloc[0]],
        after=summarize(shifted, classes, positive, info)["variants"][shifted["variant"].iloc[0]],
    )


def _interval(ci: Any) -> str:
    return "" if ci is None or not isinstance(ci, (list, tuple)) else f"[{ci[0]:.3f}-{ci[1]:.3f}]"


class Transfer:
    """What moved, written beside the external report (``internal_vs_external.csv``,
    ``figures/external_errors.png``, ``rethreshold.json``) and added to it as a section: pass the object as
    ``evaluate_run(..., sections=)``; ``result`` then holds what metrics.json gets under ``transfer``.

    ``predictions``: the first variant's external rows, ``probabilities`` / ``crops`` in their order; ``run``: the
    TrainedRun; ``recalibrate``: people per class of the new site used to re-threshold (None: not done).
    """

    def __init__(self, run: Any, predictions: pd.DataFrame, probabilities: np.ndarray, crops: np.ndarray,
                 out_dir: Path, recalibrate: int | None = None, seed: int = 0):
        self.run, self.predictions, self.probabilities, self.crops = run, predictions, probabilities, crops
        self.out_dir, self.recalibrate, self.seed = Path(out_dir), recalibrate, seed
        self.result: dict[str, Any] = {}

    def __call__(self, report: Any, external: dict[str, Any]) -> None:
        import json

        from facediag.scoring.results import to_json

        run = self.run
        internal = (run.summary.get("variants") or {}).get(run.variant) or run.summary
        table = internal_vs_external(internal, external["variants"][run.variant])
        table.to_csv(self.out_dir / "internal_vs_external.csv", index=False)
        shift = threshold_shift(table)
        self.result = {"internal_vs_external": table.to_dict("records"), "threshold_shift": shift}
        from facediag.evaluation.report import fmt_number

        shown = table.assign(**{k: table[k].map(fmt_number) for k in ("internal", "external", "change")},
                             internal_ci=table["internal_ci"].map(_interval),
                             external_ci=table["external_ci"].map(_interval))
        report.heading("Internal vs external: what moved")
        report.table(shown, caption=f"{run.variant}: the run's own test split vs this site (person-level 95% "
                     "intervals)")
        report.text(f"WARNING: {shift}" if shift else
                    f"No threshold shift flagged (the AUC fell by more than {AUC_HOLDS}, or accuracy, sensitivity "
                    f"and specificity stayed within {FALL} of the run's own test split).")
        gallery = error_gallery(self.predictions, self.crops, self.probabilities, run.classes,
                                self.out_dir / "figures" / "external_errors.png",
                                f"{run.variant}: misclassified photos of the new site")
        if gallery is not None:
            report.figure(gallery, caption="misclassified photos of the new site (the aligned crops the model saw)")
        if not self.recalibrate:
            return
        moved = rethreshold(self.predictions, self.probabilities, run.classes, run.positive, int(self.recalibrate),
                            self.seed)
        self.result["rethreshold"] = {
            "people_per_class": int(self.recalibrate), "seed": self.seed, "offsets": moved.offsets,
            "calibration_people": moved.calibration_people, "held_out_before": moved.before,
            "held_out_after": moved.after}
        (self.out_dir / "rethreshold.json").write_text(
            json.dumps(self.result["rethreshold"], indent=2, default=to_json))
        rows = pd.DataFrame([{"metric": k, "run's threshold": fmt_number(moved.before.get(k)),
                              "re-thresholded": fmt_number(moved.after.get(k)),
                              "interval after": _interval(moved.after.get(f"{k}_ci"))}
                             for k in COMPARED if moved.before.get(k) is not None])
        report.heading("Re-thresholded on part of the new site (reported apart)", level=3)
        report.text(f"Offsets fitted on {len(moved.calibration_people)} people ({self.recalibrate} per class, seed "
                    f"{self.seed}); the table scores only the other {moved.after['n']} photos of this site. The "
                    "model is unchanged; only its decision offsets moved.")
        report.table(rows)
