"""Every flag reaches the user: predict's CSV (status, reason, flags), the Assessor API the app calls, explain's blank
saliency status and the image limits. Photos without people come from scikit-image (tests/natural_photos.py); the
London faces are combined in memory, never committed."""

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import run_python
from tests.natural_photos import natural_photos


def london_face(london_dir: Path, name: str = "neutral/100_03.jpg") -> np.ndarray:
    return np.asarray(Image.open(london_dir / name).convert("RGB"))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (what a decompression bomb looks like)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


# ---------------------------------------------------------------- no run needed


def test_blank_reason_names_nan_zero_constant_and_negative_maps():
    from facediag.apply.saliency import blank_reason

    assert "zero" in blank_reason(np.zeros((8, 8)))
    assert "NaN" in blank_reason(np.full((8, 8), np.nan))
    assert "constant" in blank_reason(np.full((8, 8), 0.5))
    assert "no positive" in blank_reason(-np.arange(64.0).reshape(8, 8))
    assert blank_reason(np.arange(64.0).reshape(8, 8)) == ""


def test_a_scored_photo_with_a_flag_is_flagged_with_the_flag_in_words_and_other_statuses_keep_theirs():
    from facediag.apply.flags import FLAGS, status_and_reason

    status, reason = status_and_reason("ok", "", ["upsampled", "several_faces"], {"several_faces": "2 found"})
    assert status == "flagged" and FLAGS["upsampled"] in reason and "(2 found)" in reason
    assert status_and_reason("ok", "", []) == ("ok", "")
    status, reason = status_and_reason("center_crop", "no face found", ["center_crop", "out_of_distribution"])
    assert status == "center_crop" and reason.startswith("no face found;") and FLAGS["center_crop"] not in reason


def test_a_decompression_bomb_and_an_oversized_upload_are_refused_with_a_message_naming_the_file(tmp_path):
    from facediag.core.imageio import BadImageError, read_rgb, read_rgb_bytes

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(8_000, 8_000))  # 64 megapixels in 100 bytes: over facediag's limit
    with pytest.raises(BadImageError, match=r"bomb\.png: 8000x8000 .* exceeds the limit.*decompression bomb"):
        read_rgb(bomb)
    huge = bomb_png(40_000, 40_000)  # over PIL's own limit: its DecompressionBombError, mapped
    with pytest.raises(BadImageError, match=r"upload\.png: refused as a possible decompression bomb"):
        read_rgb_bytes(huge, "upload.png", max_pixels=10**10)
    with pytest.raises(BadImageError, match=r"big\.jpg: 2000 bytes exceeds the upload limit of 1000"):
        read_rgb_bytes(b"\0" * 2000, "big.jpg", max_bytes=1000)


# ---------------------------------------------------------------- a tiny DTL2 run


@pytest.fixture(scope="module")
def assessor(tiny_dtl2_run):
    from facediag.apply.assess import Assessor
    from facediag.apply.trained_run import TrainedRun

    return Assessor(TrainedRun(tiny_dtl2_run))


@pytest.mark.slow
def test_natural_photos_are_far_outside_the_training_faces_and_never_a_confident_ok(assessor, tiny_dtl2_run, tmp_path):
    photos = natural_photos()
    size = assessor.run.crop.size
    squares = np.stack([cv2.resize(image[: min(image.shape[:2]), : min(image.shape[:2])], (size, size))
                        for image in photos.values()])  # fmt: skip
    check = assessor.distribution
    natural = check.distances(squares)
    split = pd.read_csv(tiny_dtl2_run / "split.csv")
    faces = [p for p in assessor.assess_paths(split.loc[split["role"] == "test", "path"].tolist()) if p.scored]
    test_faces = np.array([p.distance for p in faces])
    assert (natural > check.threshold).all(), dict(zip(photos, natural.round(1), strict=True))
    assert test_faces.max() < natural.min()  # new people's faces are nearer the training faces than any non-face
    folder = tmp_path / "nature"
    folder.mkdir()
    for name in ("coffee", "coins_q1", "cartoon", "noise"):
        Image.fromarray(photos[name]).save(folder / f"{name}.png")
    out = tmp_path / "nature.csv"
    done = run_python("-m", "facediag.predict", str(folder), f"run={tiny_dtl2_run}", f"out={out}")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    table = pd.read_csv(out)
    assert len(table) == 4
    confident = table.filter(like="p_").max(axis=1) >= 0.9
    assert not (confident & (table["status"] == "ok")).any(), table[["path", "status", "flags"]]


@pytest.mark.slow
def test_several_faces_upsampled_faces_and_training_photos_are_flagged_in_the_csv(assessor, tiny_dtl2_run,
                                                                                    london_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    face = london_face(london_dir)
    other = london_face(london_dir, "neutral/101_03.jpg")
    two = np.concatenate([cv2.resize(face, (500, 500)), cv2.resize(other, (500, 500))], axis=1)
    Image.fromarray(two).save(folder / "two_faces.png")
    Image.fromarray(cv2.resize(face, (110, 110), interpolation=cv2.INTER_AREA)).save(folder / "small.png")
    split = pd.read_csv(tiny_dtl2_run / "split.csv")
    trained_on = split.loc[split["role"] == "train", "path"].iloc[0]
    (folder / "trained_on.jpg").symlink_to(trained_on)
    out = tmp_path / "flags.csv"
    done = run_python("-m", "facediag.predict", str(folder), f"run={tiny_dtl2_run}", f"out={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out)
    table.index = [Path(p).name for p in table["path"]]
    assert (table["status"] == "flagged").all(), table[["status", "flags"]]
    assert "several_faces" in table.at["two_faces.png", "flags"].split(";")
    assert table.at["two_faces.png", "n_faces"] == 2
    assert "upsampled" in table.at["small.png", "flags"].split(";")
    assert "overlaps_training_person" in table.at["trained_on.jpg", "flags"].split(";")
    assert table[[c for c in table.columns if c.startswith("p_")]].notna().all().all()  # still shown, flagged
    assert "only after upsampling" in table.at["small.png", "reason"]
    assert "flagged: " in done.stderr  # the console lists them too


@pytest.mark.slow
def test_one_photo_from_bytes_or_an_array_gives_the_apps_record_and_a_bad_file_a_message(assessor, london_dir):
    face = london_face(london_dir, "smiling/102_08.jpg")
    photo = assessor.assess_image(cv2.resize(face, (600, 600)), "face.png")
    assert photo.scored and photo.crop.shape == (150, 150, 3) and photo.landmarks.shape == (68, 2)
    assert abs(sum(photo.probabilities_by_class.values()) - 1) < 1e-6 and photo.top1 in assessor.run.classes
    assert photo.distance < photo.threshold and photo.row()["status"] == photo.status
    broken = assessor.assess_image(b"not an image at all", "upload.jpg")
    assert broken.status == "error" and "upload.jpg" in broken.reason and not broken.scored
    bomb = assessor.assess_image(bomb_png(40_000, 40_000), "bomb.png")
    assert bomb.status == "error" and "bomb.png" in bomb.reason and "decompression bomb" in bomb.reason
    wall = assessor.assess_image(np.full((200, 300, 3), 180, np.uint8), "wall.png")
    assert wall.status == "no_face" and "no face" in wall.reason


@pytest.mark.slow
def test_a_blank_gradcam_map_falls_back_to_occlusion_and_a_map_blank_for_every_method_is_not_ok(assessor,
                                                                                                 tiny_dtl2_run):
    import torch

    from facediag.apply.explain import Explainer, saliency_status

    split = pd.read_csv(tiny_dtl2_run / "split.csv")
    photo = assessor.assess_paths(split.loc[split["role"] == "test", "path"].tolist()[:1])[0]
    explainer = Explainer(assessor.run)
    module = explainer.cnn()
    with torch.no_grad():
        module.linear.weight.zero_()  # a class score that ignores the image: Grad-CAM's map is all zeros
    checked = explainer.explain_crop(photo.crop)
    assert checked.tried == ["gradcam", "occlusion"] and checked.method == "occlusion" and checked.status == "ok"
    assert "gradcam map blank: every value is zero" in checked.reason and np.ptp(checked.saliency) > 0
    status, reason, flags = saliency_status(photo, checked)
    assert status == "flagged" and "saliency_fallback" in flags and "occlusion" in reason
    flat = Explainer(assessor.run, "occlusion").explain_crop(np.full((150, 150, 3), 128, np.uint8))
    assert flat.status == "blank_saliency" and "constant map" in flat.reason  # covering grey with grey changes nothing
    assert saliency_status(photo, flat)[0] == "blank_saliency"


def test_the_overlap_flag_uses_the_cross_set_identity_threshold():
    """predict's overlap flag and external validation call the same person at one distance."""
    from facediag.apply.flags import OVERLAP_DISTANCE
    from facediag.data.identity import CROSS_SET_IDENTITY_THRESHOLD

    assert OVERLAP_DISTANCE == CROSS_SET_IDENTITY_THRESHOLD
