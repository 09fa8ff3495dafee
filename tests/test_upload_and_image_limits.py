"""What a visitor or a script may hand in (facediag.app.service uploads, facediag.apply.assess.load_image): zips
over the unpacked limits, files outside the upload folder, arrays of the wrong kind and files over the byte or
pixel limits are refused with the file's name and the reason; small synthetic images, limits lowered by the test."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facediag.app import service
from facediag.apply.assess import PhotoResult, load_image
from facediag.core.imageio import BadImageError


def png_bytes(side: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def zipped(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_a_zip_over_the_unpacked_limit_is_refused_and_a_member_over_one_image_s_limit_is_skipped(tmp_path,
                                                                                                  monkeypatch):
    small, large = png_bytes(4), png_bytes(64)
    archive = zipped(tmp_path / "photos.zip", {"small.png": small, "large.png": large})
    into = tmp_path / "into"
    into.mkdir()
    monkeypatch.setattr(service, "MAX_MEMBER_BYTES", len(small) + 1)
    found, skipped = service.unzip(archive, into)
    assert [u.name for u in found] == ["photos.zip/small.png"] and Path(found[0].path).read_bytes() == small
    assert skipped == [("photos.zip/large.png", "larger than the limit for one image")]
    monkeypatch.setattr(service, "MAX_UNPACKED_BYTES", len(small))
    with pytest.raises(service.UploadError, match=r"photos.zip: 0 MiB unpacked; at most 0 MiB"):
        service.unzip(archive, into)


def test_uploads_take_files_and_zips_from_the_upload_folder_and_refuse_a_client_s_own_path(tmp_path):
    root = tmp_path / "uploads"
    root.mkdir()
    (root / "face.png").write_bytes(png_bytes())
    zipped(root / "more.zip", {"x/one.png": png_bytes(), "readme.md": b"hi"})
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    found, refused = service.uploads([root / "face.png", root / "more.zip", outside], scratch, root)
    assert [u.name for u in found] == ["face.png", "more.zip/x/one.png"]
    assert refused == [("more.zip/readme.md", "not an image file (by its extension)"),
                       ("secret.png", "not an uploaded file (only files sent through the page are read)")]


def test_an_image_array_must_be_uint8_rgb_within_the_pixel_limit_and_grey_is_made_rgb():
    grey, name, sha = load_image(np.full((4, 5), 7, np.uint8), "scan")
    assert grey.shape == (4, 5, 3) and (grey == 7).all() and (name, sha) == ("scan", "")
    with pytest.raises(BadImageError, match=r"array.*an image array must be uint8 \(H, W, 3\), got float64"):
        load_image(np.zeros((4, 4, 3)))
    with pytest.raises(BadImageError, match="big.*5x4 pixels exceeds the limit of 10"):
        load_image(np.zeros((4, 5, 3), np.uint8), "big", max_pixels=10)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(16))
    size = photo.stat().st_size
    with pytest.raises(BadImageError, match=f"photo.png.*{size} bytes exceeds the upload limit of 10"):
        load_image(photo, max_bytes=10)
    pixels, name, sha = load_image(photo)
    assert pixels.shape == (16, 16, 3) and name == str(photo) and len(sha) == 64


def test_an_unscored_photo_has_no_probabilities_and_no_top_class():
    result = PhotoResult("nobody.jpg", "no_face", "no face found", classes=["female", "male"])
    assert result.probabilities_by_class == {} and result.top1 is None and not result.scored
    assert result.row()["status"] == "no_face" and "top1" not in result.row()
