"""strategy=gallery: classes ranked by the cosine distance of a photo's frozen embedding to each class's training
photos (nearest class mean, k-NN), no classifier fitted; trained through train.py, applied and reported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from facediag.strategies.gallery import class_distances, log_loss, normalised


def test_a_photo_is_ranked_nearest_the_class_whose_gallery_photos_point_its_way():
    rng = np.random.default_rng(0)
    directions = normalised(rng.normal(size=(3, 16)))
    labels = np.repeat([0, 1, 2], 4)
    gallery = normalised(directions[labels] + 0.2 * rng.normal(size=(12, 16)))
    queries = normalised(directions + 0.2 * rng.normal(size=(3, 16)))
    for rule, k in (("mean", 1), ("knn", 1), ("knn", 3)):
        distances = class_distances(queries, gallery, labels, 3, rule, k)
        assert list(distances.argmin(axis=1)) == [0, 1, 2], rule
        assert (distances >= 0).all() and (distances <= 2).all()
    # knn with k=1 is the distance to the nearest photo of the class
    nearest = 1 - (queries @ gallery.T)
    np.testing.assert_allclose(class_distances(queries, gallery, labels, 3, "knn", 1)[:, 1], nearest[:, 4:8].min(1))


def test_a_class_without_gallery_photos_is_ranked_last():
    gallery, labels = normalised(np.eye(4)[:2]), np.array([0, 1])
    distances = class_distances(normalised(np.ones((1, 4))), gallery, labels, 3, "mean")
    assert distances[0, 2] == 2.0 and distances.argmax() == 2


def test_the_temperature_with_the_smallest_log_loss_fits_the_distances_spread():
    distances = np.array([[0.1, 0.3], [0.3, 0.1], [0.1, 0.3], [0.3, 0.1]])
    y = np.array([0, 1, 0, 0])  # three right, one wrong: neither the sharpest nor the flattest softmax is best
    losses = {t: log_loss(distances, y, t) for t in (0.01, 0.1, 1.0)}
    assert min(losses, key=losses.get) == 0.1


@pytest.fixture(scope="module")
def gallery_run(tiny_run):
    return tiny_run("strategy=gallery", "strategy.k_grid=[1,3]")


@pytest.mark.slow
def test_a_gallery_run_trains_through_train_py_with_one_row_per_rule(gallery_run):
    metrics = json.loads((gallery_run / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"gallery_mean", "gallery_knn"}
    knn = metrics["variants"]["gallery_knn"]
    assert knn["gallery_k"] in (1, 3) and 0 <= knn["val_accuracy"] <= 1 and knn["gallery_temperature"] > 0
    stored = np.load(gallery_run / "gallery.npz")
    np.testing.assert_allclose(np.linalg.norm(stored["embeddings"], axis=1), 1, atol=1e-5)
    split = pd.read_csv(gallery_run / "split.csv")
    assert len(stored["labels"]) == split["role"].isin(["train", "val"]).sum()  # the gallery: the training part


@pytest.mark.slow
def test_a_gallery_run_applied_again_gives_its_own_test_scores_and_its_gradcam_module_agrees(gallery_run):
    import torch

    from facediag.apply.trained_run import TrainedRun

    for variant in ("gallery_mean", "gallery_knn"):
        own = pd.read_csv(gallery_run / "predictions.csv")
        own = own[own["variant"] == variant].set_index("path")
        run = TrainedRun(gallery_run, variant=variant)
        scored = run.score(list(own.index[:3]))
        np.testing.assert_allclose(scored.scores, own[["score_female", "score_male"]].to_numpy()[:3], atol=1e-5)
        np.testing.assert_allclose(scored.probabilities.sum(axis=1), 1)
        predictor = run.predictor
        with torch.no_grad():
            module_scores = predictor.class_score_module()(predictor.torch_module().preprocess(scored.crops))
        np.testing.assert_allclose(module_scores.numpy(), scored.scores, atol=1e-4)
    from facediag.apply.saliency import gradcam

    maps = gradcam(predictor.class_score_module(), scored.crops[:1], [0])  # the saliency tools find its backbone
    assert maps.shape == (1, *scored.crops.shape[1:3]) and np.ptp(maps) > 0


@pytest.mark.slow
def test_a_gallery_run_appears_in_the_sweep_report_with_its_methods_paragraph(gallery_run, tmp_path):
    from facediag.evaluation import evaluate_sweep

    evaluate_sweep(gallery_run, out_dir=tmp_path)
    report = pd.read_csv(tmp_path / "report.csv")
    assert set(report["variant"]) == {"gallery_mean", "gallery_knn"}
    assert "no classifier fitted (gallery, GestaltMatcher-style)" in (tmp_path / "report.md").read_text()
