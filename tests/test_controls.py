"""Controls beside every result: the same method trained on what a face-blind reader sees, on the same split."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import compose_train

pytestmark = pytest.mark.slow
PER_CLASS = 20


def people(london_dir: Path) -> list[str]:
    return sorted(p.name.split("_")[0] for p in (london_dir / "neutral").glob("*_03.jpg"))[: 2 * PER_CLASS]


def save(image: np.ndarray, path: Path, quality: int = 95, noise: float = 0.0, seed: int = 0) -> None:
    pixels = image.astype(np.float64)
    if noise:
        pixels = pixels + np.random.default_rng(seed).normal(0, noise, pixels.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=quality)


def photo(london_dir: Path, person: str) -> np.ndarray:
    """The person's neutral photo at 300 x 300 (a face of ~150 px: found as at full size, a quarter of the
    detection work of 600 px)."""
    return np.asarray(Image.open(london_dir / "neutral" / f"{person}_03.jpg").convert("RGB").resize((300, 300)))


def train_on(root: Path, out: Path, cache: Path) -> dict:
    from facediag.training.train import train

    train(compose_train(out, "data=folder", f"data.root={root}", "data.n_folds=2", "strategy.C_grid=[1.0]",
                        "preprocess.progress=false", "logger=none", cache_dir=cache))
    return json.loads((out / "metrics.json").read_text())


def test_a_folder_whose_classes_differ_only_in_capture_is_flagged_by_the_capture_only_control(
    london_dir, shared_cache, tmp_path
):
    root = tmp_path / "capture"
    for i, person in enumerate(people(london_dir)):  # class b: re-saved at JPEG quality 60 with noise
        b = i >= PER_CLASS
        save(photo(london_dir, person), root / ("b" if b else "a") / f"{person}.jpg", 60 if b else 95, 6.0 * b, i)
    metrics = train_on(root, tmp_path / "run", shared_cache)
    control = metrics["controls"]["capture_only"]["dtl2"]
    assert control["above_chance"] and control["accuracy_ci"][0] > control["chance"]
    assert (tmp_path / "run" / "controls" / "capture_only" / "predictions.csv").is_file()


def test_a_change_inside_the_face_is_read_by_the_method_and_hidden_from_the_face_blind_control(
    london_dir, shared_cache, tmp_path
):
    import cv2
    from hydra.utils import instantiate

    cfg = compose_train(tmp_path, cache_dir=shared_cache)
    preprocessor = instantiate(cfg.preprocess, progress=False)
    root = tmp_path / "face"
    for i, person in enumerate(people(london_dir)):  # class b: the inner face (brows to chin hull) tinted
        image = photo(london_dir, person).astype(np.int16)
        if i >= PER_CLASS:
            save(image, tmp_path / "plain" / f"{person}.jpg")
            points = preprocessor.landmarks([str(tmp_path / "plain" / f"{person}.jpg")])[0].landmarks
            inside = np.zeros(image.shape[:2], np.uint8)
            cv2.fillConvexPoly(inside, cv2.convexHull(points[17:68].astype(np.int32)), 1)
            image[inside == 1] += np.array([70, 10, -40], dtype=np.int16)
        save(np.clip(image, 0, 255), root / ("b" if i >= PER_CLASS else "a") / f"{person}.jpg")
    metrics = train_on(root, tmp_path / "run", shared_cache)
    assert metrics["accuracy_ci"][0] > 0.5  # the method reads the face
    for name in ("face_blind", "capture_only"):
        control = metrics["controls"][name]["dtl2"]
        assert not control["above_chance"], (name, control)
    gap = metrics["controls"]["face_blind"]["dtl2"]
    assert gap["face_gap"] > 0 and gap["face_gap_ci"][0] > 0  # what the face adds, with its interval


def test_a_control_that_cannot_be_trained_is_named_and_the_method_result_stands(shared_cache, london_dir, tmp_path,
                                                                                   monkeypatch):
    from facediag.training.train import train
    from tests.conftest import TINY
    from tests.toy_strategy import MeanColour

    fit = MeanColour.fit

    def diverges_without_a_face(self, job):
        if job.out_dir.name == "face_blind":
            raise RuntimeError("the loss diverged")
        return fit(self, job)

    monkeypatch.setattr(MeanColour, "fit", diverges_without_a_face)
    toy = "+strategy={_target_: tests.toy_strategy.MeanColour, name: toy_mean_colour, size: 64}"
    summary = train(compose_train(tmp_path, *TINY, "~strategy", toy, cache_dir=shared_cache))
    assert summary["controls_failed"] == {"face_blind": "the loss diverged"}
    assert set(summary["controls"]) == {"capture_only"} and summary["accuracy"] is not None
    assert "diverged" in (tmp_path / "controls" / "face_blind" / "FAILED").read_text()
