"""Capture cues: how a photo was saved, and whether that alone tells the classes (facediag.audit.capture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facediag.audit.capture import capture_facts, cue_accuracies, grain, jpeg_quality


def portrait(rng: np.random.Generator, noise: float = 0.0, size: int = 96) -> Image.Image:
    """A smooth synthetic picture (a bright disc on a gradient), with optional pixel noise."""
    yy, xx = np.mgrid[:size, :size]
    base = 60 + 100 * xx / size + 80 * ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2)
    pixels = base[..., None] + rng.normal(0, noise, (size, size, 3)) + rng.uniform(-10, 10)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photo_folder(tmp_path: Path, quality: dict[str, int], noise: dict[str, float], people: int = 8) -> pd.DataFrame:
    """Two photos of ``people`` people per class, saved with the class's JPEG quality and pixel noise."""
    rng = np.random.default_rng(0)
    rows = []
    for label in quality:
        for person in range(people):
            for shot in range(2):
                path = tmp_path / label / f"{person}_{shot}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                portrait(rng, noise[label]).save(path, quality=quality[label])
                rows.append({"path": str(path), "label": label, "subject": f"{label}{person}", **capture_facts(path)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("quality", [100, 95, 75, 50, 20])
def test_jpeg_quality_is_read_back_from_the_quantisation_table(tmp_path, quality):
    path = tmp_path / "photo.jpg"
    portrait(np.random.default_rng(1)).save(path, quality=quality)
    with Image.open(path) as image:
        assert jpeg_quality(image) == pytest.approx(quality, abs=1)
    png = tmp_path / "photo.png"
    portrait(np.random.default_rng(1)).save(png)
    facts = capture_facts(png)
    assert facts["jpeg_quality"] is None and facts["format"] == "PNG" and facts["megapixels"] == 96 * 96 / 1e6


def test_background_grain_grows_with_pixel_noise():
    rng = np.random.default_rng(2)
    clean, noisy = (np.asarray(portrait(rng, noise).convert("L"), dtype=np.float32) for noise in (0.0, 8.0))
    assert grain(noisy) > grain(clean) + 2


def test_a_class_saved_another_way_is_flagged_and_one_saved_alike_is_not(tmp_path):
    table = photo_folder(tmp_path / "differ", {"patients": 60, "controls": 95}, {"patients": 0.0, "controls": 6.0})
    cues = cue_accuracies(table, table["label"], table["subject"]).set_index("cue")
    assert cues.loc["jpeg_quality", "shortcut"] and cues.loc["jpeg_quality", "accuracy"] == 1.0
    assert cues.loc["grain", "shortcut"] and cues.loc["grain", "low"] > cues.loc["grain", "chance"]
    assert not cues.loc["megapixels", "shortcut"] and cues.loc["megapixels", "note"] == "the same for every file"
    assert "patients: 60" in cues.loc["jpeg_quality", "per class (median or commonest)"]
    alike = photo_folder(tmp_path / "alike", {"patients": 90, "controls": 90}, {"patients": 3.0, "controls": 3.0})
    cues = cue_accuracies(alike, alike["label"], alike["subject"]).set_index("cue")
    assert not cues["shortcut"].any(), cues


def circle_landmarks(count: int, radius: float = 60.0) -> np.ndarray:
    """(count, 68, 2) landmarks on a circle around the centre of a 224 px crop: the 'face' of the synthetic crops."""
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = np.stack([112 + radius * np.cos(angles), 112 + radius * np.sin(angles)], axis=1)
    return np.repeat(ring[None], count, axis=0).astype(np.float32)


def synthetic_crops(where: str, people: int = 6) -> tuple[np.ndarray, list[str], list[str]]:
    """224 px crops whose two classes differ only outside the face circle (stripes vs plain background) or only
    inside it (a bright mouth bar or none); two photos per person, random brightness."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:224, :224]
    inside = (xx - 112) ** 2 + (yy - 112) ** 2 < 80**2
    crops, labels, groups = [], [], []
    for label in ("a", "b"):
        for person in range(people):
            for _ in range(2):
                image = np.full((224, 224), rng.uniform(60, 160)) + rng.normal(0, 4, (224, 224))
                if where == "outside" and label == "a":
                    image[~inside] += 40 * ((xx[~inside] // 8) % 2)
                if where == "inside" and label == "a":
                    image[(abs(yy - 140) < 8) & (abs(xx - 112) < 30)] += 80
                crops.append(np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
                labels.append(label)
                groups.append(f"{label}{person}")
    return np.stack(crops), labels, groups


def test_a_cnn_with_the_face_hidden_sees_a_background_difference_but_not_a_face_difference():
    from facediag.audit.capture import face_blind_accuracy, face_region

    points = circle_landmarks(24)
    assert 0.3 < face_region(points, 224).mean() < 0.5  # the circle grown by 10% of its width
    crops, labels, groups = synthetic_crops("outside")
    outside = face_blind_accuracy(crops, points, labels, groups)
    assert outside["shortcut"] and outside["accuracy"] > 0.9
    crops, labels, groups = synthetic_crops("inside")
    inside = face_blind_accuracy(crops, points, labels, groups)
    assert not inside["shortcut"] and inside["accuracy"] < 0.75, inside


def test_a_class_with_one_person_gets_a_note_instead_of_a_cross_validation(tmp_path):
    from facediag.audit.capture import TOO_FEW_PEOPLE, face_blind_accuracy

    table = photo_folder(tmp_path, {"patients": 60, "controls": 95}, {"patients": 0.0, "controls": 6.0}, people=1)
    cues = cue_accuracies(table, table["label"], table["subject"]).set_index("cue")
    assert not cues["shortcut"].any() and cues.loc["jpeg_quality", "note"] == TOO_FEW_PEOPLE
    assert cues["accuracy"].isna().all()
    crops, labels, groups = synthetic_crops("outside", people=1)
    found = face_blind_accuracy(crops, circle_landmarks(len(crops)), labels, groups)
    assert found["note"] == TOO_FEW_PEOPLE and not found["shortcut"] and np.isnan(found["accuracy"])


def test_two_people_a_class_are_too_few_for_the_face_blind_svm_s_nested_cv_and_say_so():
    from facediag.audit.capture import TOO_FEW_FOR_NESTED_CV, face_blind_accuracy

    crops, labels, groups = synthetic_crops("outside", people=2)  # a training fold: one person of each class
    found = face_blind_accuracy(crops, circle_landmarks(len(crops)), labels, groups)
    assert found["note"] == TOO_FEW_FOR_NESTED_CV and not found["shortcut"] and np.isnan(found["accuracy"])
