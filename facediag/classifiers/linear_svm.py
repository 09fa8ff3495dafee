"""A fitted linear SVM (+ its Platt sigmoids) as plain arrays: numpy-only scoring of a DTL2 run.

Applying a DTL2 run to one photo should not pay for importing scikit-learn and skops (about a second on
2 cores), nor should training pay for importing skops to save the SVM. Training writes ``svm_arrays.npz``:
the StandardScaler's mean / scale, the SVC's one-vs-one ``coef_`` / ``intercept_`` and the sigmoid
parameters of the Platt-scaled model. Scoring reproduces scikit-learn exactly (decision values, including
the one-vs-rest transform of one-vs-one votes for multiclass SVC, and CalibratedClassifierCV's sigmoid
probabilities); ``export`` checks that on the training features and writes nothing when it does not hold;
training then saves the scikit-learn objects as ``svm.skops`` / ``svm_platt.skops`` instead, and
prediction loads those. The file holds numbers only and loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
ARRAYS_FILE = "svm_arrays.npz"
SVM_FILE, SVM_PLATT_FILE = "svm.skops", "svm_platt.skops"  # written instead when the arrays cannot reproduce the SVM
#: the arrays must give the SVM's decision values to within this share of their largest size (1 at least) and its
#: probabilities to within this: float64 rounding in another order, which correlated features (e.g. a capture-only
#: control's) amplify to ~1e-6; an absolute 1e-6 refused such SVMs and made every run import skops to save them
TOLERANCE = 1e-5


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function without overflow warnings


def ovr_from_ovo(decision: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's one-vs-rest scores of one-vs-one decision values (votes + scaled confidence sums)."""
    votes = np.zeros((len(decision), n_classes))
    confidence = np.zeros((len(decision), n_classes))
    pair = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            confidence[:, i] += decision[:, pair]
            confidence[:, j] -= decision[:, pair]
            votes[decision[:, pair] >= 0, i] += 1  # a positive value votes for the first class of the pair
            votes[decision[:, pair] < 0, j] += 1
            pair += 1
    return votes + confidence / (3 * (np.abs(confidence) + 1))


class LinearSVM:
    """Decision values and Platt probabilities of a fitted linear SVM, from ``svm_arrays.npz``."""

    def __init__(self, path: str | os.PathLike):
        with np.load(path, allow_pickle=False) as arrays:
            self.mean, self.scale = arrays["mean"], arrays["scale"]
            self.coef, self.intercept = arrays["coef"], arrays["intercept"]
            self.n_classes = int(arrays["n_classes"])
            self.platt_a = arrays["platt_a"] if "platt_a" in arrays else None
            self.platt_b = arrays["platt_b"] if "platt_b" in arrays else None

    @property
    def has_probabilities(self) -> bool:
        return self.platt_a is not None

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """As the SVC's ``decision_function``: (N,) for two classes, (N, C) one-vs-rest otherwise."""
        raw = ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
        return raw[:, 0] if self.n_classes == 2 else ovr_from_ovo(raw, self.n_classes)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """As CalibratedClassifierCV(method="sigmoid", ensemble=False).predict_proba."""
        if self.platt_a is None or self.platt_b is None:
            raise ValueError("this SVM was saved without Platt scaling")
        decision = self.decision_function(features)
        if self.n_classes == 2:
            positive = _expit(-(self.platt_a[0] * decision + self.platt_b[0]))
            return np.column_stack([1.0 - positive, positive])
        proba = _expit(-(self.platt_a * decision + self.platt_b))
        total = proba.sum(axis=1, keepdims=True)
        proba = np.where(total > 0, proba / np.where(total > 0, total, 1.0), 1.0 / self.n_classes)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


def linear_arrays(estimator: Any, platt: Any | None = None) -> dict[str, np.ndarray]:
    """mean, scale, coef, intercept, n_classes (+ platt_a, platt_b) of a fitted linear SVC, optionally in
    ``Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear"))])``."""
    steps = dict(estimator.named_steps) if hasattr(estimator, "named_steps") else {"svm": estimator}
    svc, scaler = steps["svm"], steps.get("scale")
    if getattr(svc, "kernel", None) != "linear":
        raise ValueError(f"an SVC with a linear kernel is needed, got kernel {getattr(svc, 'kernel', None)!r}")
    if scaler is not None and not (scaler.with_mean and scaler.with_std):
        raise ValueError("only a StandardScaler with mean and std is folded in")
    width = svc.coef_.shape[1]
    arrays = {
        "mean": np.zeros(width) if scaler is None else np.asarray(scaler.mean_, dtype=np.float64),
        "scale": np.ones(width) if scaler is None else np.asarray(scaler.scale_, dtype=np.float64),
        "coef": np.asarray(svc.coef_.toarray() if hasattr(svc.coef_, "toarray") else svc.coef_, dtype=np.float64),
        "intercept": np.asarray(svc.intercept_, dtype=np.float64),
        "n_classes": np.asarray(len(svc.classes_)),
    }
    if platt is not None:
        (calibrated,) = platt.calibrated_classifiers_
        arrays["platt_a"] = np.array([float(c.a_) for c in calibrated.calibrators])
        arrays["platt_b"] = np.array([float(c.b_) for c in calibrated.calibrators])
    return arrays


def export(estimator: Any, platt: Any | None, features: np.ndarray, path: str | os.PathLike) -> bool:
    """Write ``path`` when the arrays reproduce ``estimator`` (and ``platt``) on ``features``; else write nothing."""
    path = Path(path)
    try:
        np.savez(path, **linear_arrays(estimator, platt))
        saved = LinearSVM(path)
        expected = estimator.decision_function(features)
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        same = np.allclose(saved.decision_function(features), expected, rtol=0, atol=TOLERANCE * scale)
        if platt is not None:
            same &= np.allclose(saved.predict_proba(features), platt.predict_proba(features), rtol=0, atol=TOLERANCE)
    except (AttributeError, KeyError, ValueError) as err:
        log.info("no %s (%s): prediction will load the skops files", path.name, err)
        path.unlink(missing_ok=True)
        return False
    if not same:
        log.warning("%s does not reproduce the fitted SVM: not kept; prediction will load the skops files", path.name)
        path.unlink(missing_ok=True)
    return bool(same)
