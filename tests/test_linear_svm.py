"""The DTL2 SVM as plain arrays (facediag.classifiers.linear_svm) scores exactly like scikit-learn, and applying a DTL2
run then needs neither scikit-learn nor skops."""


import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from facediag.apply.saliency import svm_as_linear
from facediag.classifiers.linear_svm import ARRAYS_FILE, SVM_FILE, SVM_PLATT_FILE, LinearSVM, export
from facediag.strategies.dtl2 import platt_scaled


def fitted(n_classes: int, standardize: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), 12)
    features = rng.normal(size=(len(y), 16)) + y[:, None] * 0.3 + 5.0  # far from zero mean, like dlib features
    groups = np.arange(len(y)).astype(str)
    steps = [("scale", StandardScaler())] if standardize else []
    estimator = Pipeline([*steps, ("svm", SVC(kernel="linear", C=0.5))]).fit(features, y)
    return estimator, platt_scaled(estimator, features, y, groups, 3, seed), features, rng.normal(size=(20, 16)) + 5


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("standardize", [True, False])
def test_arrays_reproduce_decision_values_and_platt_probabilities(tmp_path, n_classes, standardize):
    estimator, platt, features, new = fitted(n_classes, standardize)
    assert export(estimator, platt, features, tmp_path / ARRAYS_FILE)
    arrays = LinearSVM(tmp_path / ARRAYS_FILE)
    np.testing.assert_allclose(arrays.decision_function(new), estimator.decision_function(new), atol=1e-9)
    np.testing.assert_allclose(arrays.predict_proba(new), platt.predict_proba(new), atol=1e-9)
    if n_classes > 2:  # the one-vs-rest transform of one-vs-one votes, not the raw pairwise values
        assert arrays.decision_function(new).shape == (20, n_classes)


def test_a_model_the_arrays_cannot_hold_writes_no_file(tmp_path):
    rng = np.random.default_rng(1)
    features, y = rng.normal(size=(30, 4)), np.repeat([0, 1], 15)
    rbf = SVC(kernel="rbf").fit(features, y)
    assert not export(rbf, None, features, tmp_path / ARRAYS_FILE)
    assert not (tmp_path / ARRAYS_FILE).exists()


@pytest.mark.parametrize("n_classes", [2, 4])
def test_gradcam_linear_layer_is_the_same_from_arrays_and_from_sklearn(tmp_path, n_classes):
    estimator, platt, features, new = fitted(n_classes)
    export(estimator, platt, features, tmp_path / ARRAYS_FILE)
    from_arrays = svm_as_linear(LinearSVM(tmp_path / ARRAYS_FILE), n_classes)
    from_sklearn = svm_as_linear(estimator, n_classes)
    x = torch.from_numpy(new).float()
    torch.testing.assert_close(from_arrays(x), from_sklearn(x))


@pytest.mark.slow
def test_a_dtl2_run_saves_only_the_arrays_and_is_applied_from_them(tiny_dtl2_run, london_dir):
    import pandas as pd

    from facediag.apply.trained_run import TrainedRun
    from facediag.scoring.results import score_columns

    assert (tiny_dtl2_run / ARRAYS_FILE).is_file()
    assert not (tiny_dtl2_run / SVM_FILE).exists() and not (tiny_dtl2_run / SVM_PLATT_FILE).exists()
    test = np.load(tiny_dtl2_run / "features" / "test.npz")
    arrays = LinearSVM(tiny_dtl2_run / ARRAYS_FILE)
    own = pd.read_csv(tiny_dtl2_run / "predictions.csv").set_index("path").loc[test["paths"]]
    scores = own[score_columns(sorted(own["label"].unique()))].to_numpy()
    np.testing.assert_allclose(arrays.decision_function(test["features"]), scores[:, 1], atol=1e-6)
    assert arrays.has_probabilities and isinstance(TrainedRun(tiny_dtl2_run).model()[1], LinearSVM)
    # applied in a new interpreter without importing scikit-learn or skops: tests/test_imports.py


def test_an_svm_on_correlated_features_is_still_kept_as_arrays(tmp_path):
    # features of rank 20 in 128 columns (like a capture-only control's): the arrays and libsvm round differently,
    # by ~1e-6, which an absolute 1e-6 bound once refused (the run then imported skops to save the SVM)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 54)
    features = (rng.normal(size=(108, 20)) @ rng.normal(size=(20, 128)) * 0.01 + rng.normal(size=(108, 128)) * 1e-4
                + y[:, None] * 0.001).astype(np.float32)  # fmt: skip
    estimator = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear", C=1.0))]).fit(features, y)
    assert export(estimator, None, features, tmp_path / ARRAYS_FILE)
    arrays = LinearSVM(tmp_path / ARRAYS_FILE)
    np.testing.assert_allclose(arrays.decision_function(features), estimator.decision_function(features), atol=2e-5)
    assert (arrays.decision_function(features) > 0).tolist() == estimator.predict(features).astype(bool).tolist()
