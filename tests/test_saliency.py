"""facediag.apply.saliency without a trained run: the SVM as a torch layer, occlusion, regions, randomisation."""

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from facediag.apply.saliency import (
    mass_share,
    occlusion,
    occlusion_window,
    overlay,
    randomized,
    region_mask,
    spearman,
    svm_as_linear,
)
from facediag.classifiers.svm import decision_scores

torch.set_num_threads(1)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_svm_as_linear_gives_the_pipelines_decision_values_with_the_scaler_folded_in(n_classes):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(60, 8)) * rng.uniform(0.1, 10, size=8)
    y = np.arange(60) % n_classes
    x[:, 0] += 4 * y
    svm = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear", C=1.0))]).fit(x, y)
    out = svm_as_linear(svm, n_classes)(torch.from_numpy(x).float()).detach().numpy()
    if n_classes == 2:
        np.testing.assert_allclose(out, decision_scores(svm, x, 2), rtol=1e-4, atol=1e-4)
    else:  # the per-class sums of sklearn's one-vs-one decision values
        ovo = svm.set_params(svm__decision_function_shape="ovo").decision_function(x)
        expected = np.zeros((len(x), 3))
        for k, (i, j) in enumerate([(0, 1), (0, 2), (1, 2)]):
            expected[:, i] += ovo[:, k]
            expected[:, j] -= ovo[:, k]
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
        assert (out.argmax(axis=1) == svm.predict(x)).mean() > 0.9


def test_svm_as_linear_refuses_a_non_linear_kernel():
    svm = SVC(kernel="rbf").fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="linear kernel"):
        svm_as_linear(svm, 2)


def test_occlusion_lights_up_exactly_the_patch_the_score_depends_on():
    def scorer(crops: np.ndarray) -> np.ndarray:  # class 1 = brightness of the square at rows/cols 60-89
        bright = crops[:, 60:90, 60:90].mean(axis=(1, 2, 3)) / 255
        return np.stack([-bright, bright], axis=1)

    crops = np.full((2, 150, 150, 3), 250, np.uint8)
    maps = occlusion(scorer, crops, [1, 1])
    assert maps.shape == (2, 150, 150) and maps.dtype == np.float32
    inside = np.zeros((150, 150), bool)
    inside[60:90, 60:90] = True
    assert (maps[:, inside] > 0).all() and np.allclose(maps[:, ~inside], 0)
    assert np.allclose(occlusion(scorer, crops, [0, 0]), -maps)  # the other class: covering helps


def test_occlusion_explains_a_dense_sift_classifier(london_chips):
    """DSIFT has no gradients: occlusion through its crops → scores function."""
    from facediag.classifiers.dense_sift import DenseSiftBow, make_svm

    bow = DenseSiftBow(n_words=16, max_descriptors_per_image=50).fit(london_chips)
    labels = np.arange(len(london_chips)) % 2
    svm = make_svm("linear").fit(bow.transform(london_chips), labels)

    def scorer(crops: np.ndarray) -> np.ndarray:
        return decision_scores(svm, bow.transform(crops), 2)

    maps = occlusion(scorer, london_chips[:1], [1], window=50, stride=25)  # 25 scorings (the default tiling: 100)
    assert maps.shape == (1, 150, 150) and np.isfinite(maps).all() and np.ptp(maps) > 0


def test_occlusion_windows_tile_the_usual_crops():
    assert occlusion_window(150) == (15, 15) and occlusion_window(224) == (28, 28)


def test_mouth_mask_mass_share_and_overlay():
    landmarks = np.zeros((68, 2), np.float32)
    landmarks[48:68] = [[60 + 30 * np.cos(t), 110 + 10 * np.sin(t)] for t in np.linspace(0, 2 * np.pi, 20)]
    mask = region_mask(landmarks, 150)
    assert mask[110, 60] and not mask[40, 60] and 0.02 < mask.mean() < 0.1
    assert mass_share(mask.astype(np.float32), mask) == 1.0
    assert mass_share(np.ones((150, 150)), mask) == pytest.approx(mask.mean())
    assert np.isnan(mass_share(np.zeros((150, 150)), mask))
    picture = overlay(np.zeros((150, 150, 3), np.uint8), mask.astype(np.float32), landmarks)
    assert picture.shape == (150, 150, 3) and picture.dtype == np.uint8


def test_randomized_shuffles_every_weight_and_leaves_the_original_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    before = [p.detach().clone() for p in net.parameters()]
    shuffled = randomized(net, seed=1)
    for original, kept, new in zip(before, net.parameters(), shuffled.parameters(), strict=True):
        assert torch.equal(original, kept)
        assert torch.equal(original.flatten().sort().values, new.detach().flatten().sort().values)
        if original.numel() > 8:  # a 2-element bias may be drawn in its own order
            assert not torch.equal(original, new)
    assert spearman(np.arange(10.0), np.arange(10.0)) == pytest.approx(1.0)
    assert np.isnan(spearman(np.ones(10), np.arange(10.0)))
