"""Dense SIFT bag of words and the linear / chi-squared SVMs: synthetic unit tests and real London faces."""

from __future__ import annotations

import importlib.resources
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics.pairwise import chi2_kernel
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import check_estimator
from threadpoolctl import threadpool_limits

from facediag.classifiers.dense_sift import Chi2SVC, DenseSiftBow, dense_sift_descriptors, make_svm
from facediag.scoring.metrics import classification_metrics


@pytest.fixture(autouse=True)
def one_thread():
    """One OpenMP / OpenCV thread: small k-means steps slow down badly when threads compete for 2 cores."""
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    with threadpool_limits(1):
        yield
    cv2.setNumThreads(opencv_threads)


def _gratings(n_per_class: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy horizontal (label 0) and vertical (label 1) stripes with random period and phase, uint8 RGB."""
    rng = np.random.default_rng(seed)
    coordinate = np.arange(size, dtype=np.float64)
    images, labels = [], []
    for label in (0, 1):
        for _ in range(n_per_class):
            wave = np.sin(2 * np.pi * coordinate / rng.uniform(5, 9) + rng.uniform(0, 2 * np.pi))
            plane = np.tile(wave[:, None], (1, size)) if label == 0 else np.tile(wave[None, :], (size, 1))
            grey = np.clip(128 + 90 * plane + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
            images.append(np.repeat(grey[:, :, None], 3, axis=2))
            labels.append(label)
    return np.stack(images), np.array(labels)


def test_descriptors_lie_on_one_dense_grid_per_size():
    image = _gratings(1, size=40)[0][0]
    descriptors = dense_sift_descriptors(image, step=4, sizes=(4, 8))
    # size 4: centres 6..34 step 4 -> 8 x 8; size 8: centres 12..28 step 4 -> 5 x 5.
    assert descriptors.shape == (8 * 8 + 5 * 5, 128)
    assert descriptors.dtype == np.float32
    assert np.all(descriptors >= 0) and descriptors.sum() > 0


def test_histograms_are_l1_normalised_word_counts():
    images, _ = _gratings(6)
    bow = DenseSiftBow(step=6, sizes=(4,), n_words=16, max_descriptors_per_image=40)
    histograms = bow.fit_transform(images)
    assert histograms.shape == (12, 16)
    assert np.all(histograms >= 0)
    np.testing.assert_allclose(histograms.sum(axis=1), 1.0)
    # Each image contributes the same number of descriptors, so histograms are counts / that number.
    n_descriptors = len(dense_sift_descriptors(images[0], 6, (4,)))
    np.testing.assert_allclose(histograms * n_descriptors, np.round(histograms * n_descriptors), atol=1e-9)


def test_fit_transform_equals_fit_then_transform():
    images, _ = _gratings(4)
    bow = DenseSiftBow(step=6, sizes=(4,), n_words=8, max_descriptors_per_image=30, seed=3)
    together = bow.fit_transform(images)
    separately = clone(bow).fit(images).transform(images)
    np.testing.assert_allclose(together, separately)


def test_transform_before_fit_is_refused():
    images, _ = _gratings(1)
    with pytest.raises(NotFittedError):
        DenseSiftBow().transform(images)


def test_transform_never_changes_the_vocabulary_fitted_on_training_images():
    train, _ = _gratings(4, seed=0)
    other, _ = _gratings(4, seed=1)
    bow = DenseSiftBow(step=6, sizes=(4,), n_words=8, max_descriptors_per_image=30).fit(train)
    centres = bow.vocabulary_.cluster_centers_.copy()
    bow.transform(other)
    np.testing.assert_array_equal(bow.vocabulary_.cluster_centers_, centres)
    refitted = clone(bow).fit(other).vocabulary_.cluster_centers_
    assert not np.allclose(np.sort(refitted, axis=0), np.sort(centres, axis=0))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 32, 32, 3), dtype=np.float32), "image 0: expected a uint8 RGB"),
        ([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8)], "image 1: expected a uint8 RGB"),
        (np.zeros((32, 32, 3), dtype=np.uint8), "one image of shape"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "too small"),
        ([], "at least one image"),
    ],
)
def test_bad_images_raise_a_clear_error(images, message):
    with pytest.raises(ValueError, match=message):
        DenseSiftBow(step=6, sizes=(4,), n_words=2).fit(images)


def test_too_few_descriptors_for_the_vocabulary_is_a_clear_error():
    images, _ = _gratings(1)
    with pytest.raises(ValueError, match="cannot fit a vocabulary of 500 words"):
        DenseSiftBow(step=6, sizes=(4,), n_words=500, max_descriptors_per_image=10).fit(images)


@pytest.mark.parametrize("kind", ["linear", "chi2"])
def test_bag_of_words_separates_horizontal_from_vertical_stripes(kind):
    images, labels = _gratings(8)
    groups = np.arange(len(labels)) % 8  # one horizontal and one vertical image per group
    pipeline = make_pipeline(
        DenseSiftBow(step=6, sizes=(4,), n_words=16, max_descriptors_per_image=40), make_svm(kind, C=100.0)
    )
    predicted = cross_val_predict(pipeline, images, labels, groups=groups, cv=GroupKFold(4))
    assert (predicted == labels).mean() >= 0.9


def test_chi2_svc_equals_svc_on_the_precomputed_chi2_kernel():
    rng = np.random.default_rng(0)
    features = rng.dirichlet(np.ones(10), size=30)
    labels = (features[:, 0] + features[:, 1] > features[:, 2] + features[:, 3]).astype(int)
    model = Chi2SVC(C=3.0, gamma=2.0).fit(features[:20], labels[:20])
    reference = SVC(kernel="precomputed", C=3.0).fit(chi2_kernel(features[:20], gamma=2.0), labels[:20])
    test_kernel = chi2_kernel(features[20:], features[:20], gamma=2.0)
    np.testing.assert_allclose(model.decision_function(features[20:]), reference.decision_function(test_kernel))
    np.testing.assert_array_equal(model.predict(features[20:]), reference.predict(test_kernel))


def test_chi2_svc_mean_gamma_is_the_inverse_mean_chi2_distance():
    features = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    model = Chi2SVC(gamma="mean").fit(features, [0, 1, 0])
    # Pairwise sum((x - y)^2 / (x + y)): (0,1) -> 0.5 + 0 + 0.5 = 1; (0,2) -> 1/6 + 0.5 = 2/3; (1,2) -> 2.
    assert model.gamma_ == pytest.approx(1.0 / np.mean([1.0, 2.0 / 3.0, 2.0]))


def test_chi2_svc_refuses_negative_features():
    with pytest.raises(ValueError, match="Negative values"):
        Chi2SVC().fit(np.array([[0.5, -0.1], [0.2, 0.8]]), [0, 1])


def test_chi2_svc_passes_the_scikit_learn_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SkipTestWarning for the optional array-API check
        check_estimator(Chi2SVC())


@pytest.mark.parametrize("kind", ["linear", "chi2"])
def test_both_svms_tune_c_in_a_grid_search_with_person_groups(kind):
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 20)
    concentration = np.where(labels[:, None] == 0, [4.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 4.0])
    features = np.array([rng.dirichlet(alpha) for alpha in concentration])
    groups = np.tile(np.arange(20), 2)
    search = GridSearchCV(make_svm(kind), {"C": [0.1, 10.0, 1000.0]}, cv=GroupKFold(4)).fit(
        features, labels, groups=groups
    )
    assert search.best_params_["C"] in (0.1, 10.0, 1000.0)
    assert search.best_score_ >= 0.8
    assert search.predict(features).shape == (40,)


def test_make_svm_rejects_unknown_kinds():
    assert isinstance(make_svm("linear", C=2.0), SVC) and make_svm("linear", C=2.0).kernel == "linear"
    assert isinstance(make_svm("chi2", C=2.0), Chi2SVC)
    with pytest.raises(ValueError, match="'linear' or 'chi2'"):
        make_svm("rbf")


def test_chi2_svc_round_trips_through_skops_when_trusted():
    import skops.io  # here, not at collection: ~2 s per worker

    rng = np.random.default_rng(2)
    features, labels = rng.dirichlet(np.ones(6), size=20), np.repeat([0, 1], 10)
    model = Chi2SVC(C=10.0).fit(features, labels)
    payload = skops.io.dumps(model)
    assert skops.io.get_untrusted_types(data=payload) == ["facediag.classifiers.dense_sift.Chi2SVC"]
    restored = skops.io.loads(payload, trusted=["facediag.classifiers.dense_sift.Chi2SVC"])
    np.testing.assert_allclose(restored.decision_function(features), model.decision_function(features))


# --- Real faces -----------------------------------------------------------------------------------


def _detect_and_align(path: Path, detector, predictor) -> np.ndarray:
    import dlib

    from facediag.core.imageio import read_rgb

    image = read_rgb(path)
    small = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4), interpolation=cv2.INTER_AREA)
    faces = detector(small, 1)
    if len(faces) == 0:
        raise AssertionError(f"{path}: no face found by dlib's detector")
    box = max(faces, key=lambda rect: rect.area())
    full_box = dlib.rectangle(box.left() * 4, box.top() * 4, box.right() * 4, box.bottom() * 4)
    return dlib.get_face_chip(image, predictor(image, full_box), size=150)


@pytest.fixture(scope="module")
def london_expression_crops(london_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aligned 150 px crops of the first 10 London people, neutral (0) and smiling (1); groups = person."""
    import dlib

    models = importlib.resources.files("face_recognition_models") / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    people = sorted(path.stem.split("_")[0] for path in (london_dir / "neutral").glob("*_03.jpg"))[:10]
    crops, labels, groups = [], [], []
    for person in people:
        for label, relative in enumerate((f"neutral/{person}_03.jpg", f"smiling/{person}_08.jpg")):
            crops.append(_detect_and_align(london_dir / relative, detector, predictor))
            labels.append(label)
            groups.append(person)
    return np.stack(crops), np.array(labels), np.array(groups)


@pytest.mark.slow
def test_real_faces_give_one_normalised_histogram_each(london_expression_crops):
    crops, _, _ = london_expression_crops
    assert crops.shape == (20, 150, 150, 3) and crops.dtype == np.uint8
    bow = DenseSiftBow(n_words=64).fit(crops[:16])
    histograms = bow.transform(crops[16:])
    assert histograms.shape == (4, 64)
    np.testing.assert_allclose(histograms.sum(axis=1), 1.0)
    assert bow.n_descriptors_fitted_ == 16 * 200  # sampled from the 16 training faces only


@pytest.mark.slow
def test_expression_is_learnable_above_chance_with_person_grouped_cv(london_expression_crops):
    crops, labels, groups = london_expression_crops
    pipeline = make_pipeline(DenseSiftBow(n_words=128), make_svm("chi2", C=10.0))
    decision = cross_val_predict(pipeline, crops, labels, groups=groups, cv=GroupKFold(5), method="decision_function")
    metrics = classification_metrics(labels, np.column_stack([-decision, decision]), ["neutral", "smiling"])
    # 16 training faces per fold: weak but real. A random scorer's AUC on 20 samples has SD ~0.13.
    assert metrics["auc"] >= 0.65
    assert metrics["accuracy"] > 0.5
