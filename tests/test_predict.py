"""facediag.predict on a tiny DTL2 run: scikit-image's public-domain astronaut photo and a no-face image."""

import numpy as np
import pytest
from PIL import Image

from facediag.predict import main

pytestmark = pytest.mark.slow


def test_predict_prints_probabilities_and_top3_and_writes_the_aligned_crop(london_dir, tiny_dtl2_run, tmp_path, capsys):
    from skimage import data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    assert main([str(photo), f"run={tiny_dtl2_run}", f"out={tmp_path / 'out'}"]) == 0
    printed = capsys.readouterr().out
    assert "top-1:" in printed and "female" in printed and "male" in printed
    assert "Research tool, not a diagnosis." in printed
    probabilities = [float(part.split("=")[1]) for part in printed.split("all: ")[1].splitlines()[0].split(", ")]
    assert abs(sum(probabilities) - 1.0) < 1e-6
    crop = np.asarray(Image.open(tmp_path / "out" / "astronaut_aligned.png"))
    assert crop.shape == (150, 150, 3)


def test_predict_refuses_an_image_without_a_face_and_says_why(london_dir, tiny_dtl2_run, tmp_path, capsys):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 180, dtype=np.uint8)).save(blank)
    assert main([str(blank), f"run={tiny_dtl2_run}", f"out={tmp_path / 'out'}"]) == 1
    printed = capsys.readouterr().out
    assert "wall.png: refused" in printed and "no face" in printed
    assert not (tmp_path / "out" / "wall_aligned.png").exists()


def test_predict_without_a_run_prints_usage():
    with pytest.raises(SystemExit, match="usage"):
        main(["photo.jpg"])
