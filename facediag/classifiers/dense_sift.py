"""The paper's traditional baseline: dense SIFT -> bag of visual words -> SVM (linear or chi-squared).

``DenseSiftBow`` computes SIFT descriptors (OpenCV) at every node of a regular grid on the grey
aligned face, at one or more patch sizes, assigns each descriptor to its nearest visual word of a
k-means vocabulary fitted on the training images only, and returns one L1-normalised word histogram
per image. ``make_svm`` builds the two classifiers of the paper's tables: a linear SVM and an SVM with
the exponential chi-squared kernel (``Chi2SVC``). All are scikit-learn estimators: they clone, go in a
``Pipeline`` and tune in ``GridSearchCV`` with ``GroupKFold``.

Threads: MiniBatchKMeans runs many tiny OpenMP steps; on a busy machine with few cores they can be
10x slower with 2 threads than with one, so callers on such machines should wrap ``fit`` in
``threadpoolctl.threadpool_limits(1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics.pairwise import chi2_kernel
from sklearn.svm import SVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["DenseSiftBow", "Chi2SVC", "make_svm", "dense_sift_descriptors"]

Images = np.ndarray | Sequence[np.ndarray]


def _as_image_list(images: Images) -> list[np.ndarray]:
    """Validate uint8 RGB images (an (N, H, W, 3) array or a sequence of (H, W, 3) arrays)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError(f"expected a batch of images (N, H, W, 3), got one image of shape {images.shape}")
    image_list = list(images)
    if not image_list:
        raise ValueError("expected at least one image, got none")
    for index, image in enumerate(image_list):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            description = (
                f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image)
            )
            raise ValueError(f"image {index}: expected a uint8 RGB array (H, W, 3), got {description}")
    return image_list


def _grid_keypoints(height: int, width: int, step: int, sizes: Sequence[float]) -> list[cv2.KeyPoint]:
    """Keypoints on a regular grid, one grid per size, centres at least 1.5 * size from the border.

    OpenCV's SIFT descriptor of a keypoint of size s covers 4 x 4 cells of 1.5 * s pixels, i.e. a
    window 6 * s pixels wide; the margin keeps its inner 2 x 2 cells inside the image.
    """
    keypoints = []
    for size in sizes:
        margin = int(np.ceil(1.5 * size))
        ys = np.arange(margin, height - margin + 1, step)
        xs = np.arange(margin, width - margin + 1, step)
        if ys.size == 0 or xs.size == 0:
            raise ValueError(f"image of {width}x{height} pixels is too small for SIFT patches of size {size}")
        keypoints += [cv2.KeyPoint(float(x), float(y), float(size)) for y in ys for x in xs]
    return keypoints


def dense_sift_descriptors(image: np.ndarray, step: int, sizes: Sequence[float]) -> np.ndarray:
    """SIFT descriptors (n_keypoints, 128) float32 of a uint8 RGB image on a dense grid."""
    (image,) = _as_image_list([image])
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    keypoints = _grid_keypoints(grey.shape[0], grey.shape[1], step, sizes)
    _, descriptors = cv2.SIFT_create().compute(grey, keypoints)
    if descriptors is None or len(descriptors) != len(keypoints):
        returned = 0 if descriptors is None else len(descriptors)
        raise RuntimeError(f"OpenCV SIFT returned {returned} descriptors for {len(keypoints)} grid keypoints")
    return descriptors.astype(np.float32, copy=False)


class DenseSiftBow(TransformerMixin, BaseEstimator):
    """Dense SIFT bag of visual words: uint8 RGB aligned faces -> L1-normalised word histograms.

    step: grid spacing in pixels. sizes: OpenCV keypoint sizes in pixels, one grid per size; the
    descriptor window is 6 * size pixels wide, so (4, 8) gives 24 and 48 pixel windows on a 150 pixel
    face. n_words: vocabulary size (k of k-means). max_descriptors_per_image: descriptors sampled per
    training image to fit the vocabulary (``transform`` always uses all of them). seed: sampling and
    k-means seed.
    """

    def __init__(
        self,
        step: int = 6,
        sizes: Sequence[float] = (4, 8),
        n_words: int = 256,
        max_descriptors_per_image: int = 200,
        seed: int = 0,
    ):
        self.step = step
        self.sizes = sizes
        self.n_words = n_words
        self.max_descriptors_per_image = max_descriptors_per_image
        self.seed = seed

    def __sklearn_tags__(self):
        """Input: images (a list or an (N, H, W, 3) uint8 array), not a 2-D table (scikit-learn's checks skip it)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def _check_parameters(self) -> None:
        if int(self.step) < 1:
            raise ValueError(f"DenseSiftBow: step must be a positive number of pixels, got {self.step}")
        if len(self.sizes) == 0 or any(float(size) <= 0 for size in self.sizes):
            raise ValueError(f"DenseSiftBow: sizes must be positive patch sizes in pixels, got {self.sizes}")
        if int(self.n_words) < 2:
            raise ValueError(f"DenseSiftBow: n_words must be at least 2, got {self.n_words}")
        if int(self.max_descriptors_per_image) < 1:
            raise ValueError(
                f"DenseSiftBow: max_descriptors_per_image must be positive, got {self.max_descriptors_per_image}"
            )

    def _descriptors(self, images: list[np.ndarray]) -> list[np.ndarray]:
        self._check_parameters()  # before any SIFT: step 0 or no sizes would fail there with a bare error
        return [dense_sift_descriptors(image, int(self.step), self.sizes) for image in images]

    def fit(self, images: Images, y: object = None) -> DenseSiftBow:
        """Fit the visual vocabulary on these (training) images."""
        self._fit_descriptors(self._descriptors(_as_image_list(images)))
        return self

    def _fit_descriptors(self, descriptors: list[np.ndarray]) -> None:
        rng = np.random.default_rng(self.seed)
        per_image = int(self.max_descriptors_per_image)
        sample = np.concatenate(
            [d if len(d) <= per_image else d[rng.choice(len(d), per_image, replace=False)] for d in descriptors]
        )
        if len(sample) < int(self.n_words):
            raise ValueError(
                f"DenseSiftBow: {len(sample)} sampled descriptors cannot fit a vocabulary of {self.n_words} words; "
                "use more training images, a larger max_descriptors_per_image or fewer words"
            )
        self.vocabulary_ = MiniBatchKMeans(
            n_clusters=int(self.n_words),
            random_state=self.seed,
            n_init=1,
            batch_size=1024,
        ).fit(sample)
        self.n_descriptors_fitted_ = len(sample)

    def _histograms(self, descriptors: list[np.ndarray]) -> np.ndarray:
        n_words = self.vocabulary_.n_clusters
        histograms = np.zeros((len(descriptors), n_words), dtype=np.float64)
        for row, image_descriptors in enumerate(descriptors):
            words = self.vocabulary_.predict(image_descriptors)
            counts = np.bincount(words, minlength=n_words)
            histograms[row] = counts / counts.sum()
        return histograms

    def transform(self, images: Images) -> np.ndarray:
        """L1-normalised visual-word histograms (N, n_words); the vocabulary is not changed."""
        check_is_fitted(self, "vocabulary_")
        return self._histograms(self._descriptors(_as_image_list(images)))

    def fit_transform(self, images: Images, y: object = None) -> np.ndarray:
        """Fit the vocabulary on these images and return their histograms (SIFT computed once)."""
        descriptors = self._descriptors(_as_image_list(images))
        self._fit_descriptors(descriptors)
        return self._histograms(descriptors)


class Chi2SVC(ClassifierMixin, BaseEstimator):
    """SVM with the exponential chi-squared kernel ``exp(-gamma * sum((x - y)^2 / (x + y)))``.

    For non-negative features such as histograms. gamma: a positive float, or ``"mean"`` for the
    inverse of the mean chi-squared distance between training samples (Zhang et al., IJCV 2007).
    """

    def __init__(self, C: float = 1.0, gamma: float | Literal["mean"] = "mean"):
        self.C = C
        self.gamma = gamma

    def _resolve_gamma(self, X: np.ndarray) -> float:
        if isinstance(self.gamma, str):
            if self.gamma != "mean":
                raise ValueError(f"Chi2SVC: gamma must be a positive number or 'mean', got {self.gamma!r}")
            # chi2_kernel(gamma=1) = exp(-distance), so the distances are -log of it.
            distances = -np.log(np.clip(chi2_kernel(X, gamma=1.0), 1e-300, None))
            mean_distance = distances[np.triu_indices(len(X), k=1)].mean() if len(X) > 1 else 0.0
            return 1.0 / mean_distance if mean_distance > 0 else 1.0
        if not float(self.gamma) > 0:
            raise ValueError(f"Chi2SVC: gamma must be positive, got {self.gamma}")
        return float(self.gamma)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    @staticmethod
    def _checked(X: np.ndarray) -> np.ndarray:
        """Non-negative, writable features (sklearn's chi2_kernel rejects read-only buffers)."""
        if np.any(X < 0):
            raise ValueError(
                "Negative values in data passed to Chi2SVC: the chi-squared kernel needs non-negative "
                "features (e.g. histograms)"
            )
        return X if X.flags.writeable else X.copy()

    def fit(self, X: np.ndarray, y: np.ndarray) -> Chi2SVC:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        X = self._checked(X)
        self.gamma_ = self._resolve_gamma(X)
        self.X_fit_ = X
        self.svc_ = SVC(kernel="precomputed", C=self.C).fit(chi2_kernel(X, gamma=self.gamma_), y)
        self.classes_ = self.svc_.classes_
        return self

    def _kernel(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "svc_")
        X = self._checked(validate_data(self, X, dtype=np.float64, reset=False))
        return chi2_kernel(X, self._checked(self.X_fit_), gamma=self.gamma_)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """SVC decision values: (N,) for two classes (positive = classes_[1]), else (N, n_classes)."""
        kernel = self._kernel(X)
        return self.svc_.decision_function(kernel)

    def predict(self, X: np.ndarray) -> np.ndarray:
        kernel = self._kernel(X)
        return self.svc_.predict(kernel)


def make_svm(kind: Literal["linear", "chi2"], C: float = 1.0) -> SVC | Chi2SVC:
    """The paper's baseline classifiers: ``SVC(kernel="linear")`` or the chi-squared kernel ``Chi2SVC``."""
    if kind == "linear":
        return SVC(kernel="linear", C=C)
    if kind == "chi2":
        return Chi2SVC(C=C)
    raise ValueError(f"make_svm: kind must be 'linear' or 'chi2', got {kind!r}")
