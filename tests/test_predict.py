"""facediag.apply.predict and the run loader: tiny real runs of every strategy score new photos as they scored
their own test photos (scikit-image's public-domain astronaut photo and no-face images for the edge cases)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facediag.apply.predict import main
from tests.conftest import own_scores, run_python

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


# ---------------------------------------------------------------- every strategy: the loader reproduces the run

def assert_same_scores(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    columns = [c for c in expected.columns if c.startswith("score_")]
    table = table.set_index("path").loc[expected.index]
    np.testing.assert_allclose(table[columns].to_numpy(float), expected[columns].to_numpy(float), atol=1e-5)


def test_a_folder_through_the_cli_and_one_photo_get_the_runs_own_test_scores_and_bad_files_are_rows(
    finished_run, tmp_path, capsys
):
    expected = own_scores(finished_run)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, path in enumerate(expected.index):
        (folder / ("sub" if i % 2 else "") / f"{i:02d}_{Path(path).name}").symlink_to(path)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not a photo")
    Image.fromarray(np.full((120, 160, 3), 200, dtype=np.uint8)).save(folder / "wall.png")
    out = tmp_path / "scores.csv"
    result = run_python("-m", "facediag.predict", str(folder), f"run={finished_run}", f"out={out}", "batch_size=5")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out)
    assert len(table) == len(expected) + 3
    status = table.set_index(table["path"].map(lambda p: Path(p).name))["status"]
    assert (status["broken.jpg"], status["notes.txt"], status["wall.png"]) == ("error", "not_image", "no_face")
    assert table.loc[table["status"] != "ok", "reason"].notna().all()
    scored = table[table["status"].isin(["ok", "flagged"])]  # flagged: scored, a check failed (apply.flags)
    assert len(scored) == len(expected)
    scored = scored.assign(path=[str(Path(p).resolve()) for p in scored["path"]])  # the symlinks' targets
    assert_same_scores(scored, expected.set_axis([str(Path(p).resolve()) for p in expected.index]))
    classes = [c[len("score_"):] for c in expected.columns if c.startswith("score_")]
    assert (scored["top1"].isin(classes)).all()
    assert "not scored: " in result.stderr and "%|" in result.stderr  # the refusals and the progress bar

    # one photo: top-3 printed, its row with the run's own scores, the aligned crop beside the output
    photo = expected.index[0]
    out = tmp_path / "one" / "one.csv"
    out.parent.mkdir()
    assert main([photo, f"run={finished_run}", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "top-1:" in printed and "Research tool, not a diagnosis." in printed
    assert_same_scores(pd.read_csv(out), expected.loc[[photo]])
    assert (tmp_path / "one" / f"{Path(photo).stem}_aligned.png").is_file()


def test_dsift_predicts_with_the_variant_asked_for(tiny_dsift_run, tmp_path, capsys):
    expected = own_scores(tiny_dsift_run, "svm_chi2")
    out = tmp_path / "chi2.csv"
    assert main([*expected.index[:3], f"run={tiny_dsift_run}", f"out={out}", "variant=svm_chi2"]) == 0
    assert_same_scores(pd.read_csv(out), expected.iloc[:3])
    assert "svm_chi2" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no variant 'svm_rbf'.*svm_linear"):
        main([expected.index[0], f"run={tiny_dsift_run}", "variant=svm_rbf"])


def test_tta_flip_averages_the_crop_and_its_mirror(tiny_dtl2_run):
    from facediag.apply.trained_run import TrainedRun

    paths = list(own_scores(tiny_dtl2_run).index[:4])
    plain = TrainedRun(tiny_dtl2_run, batch_size=3)
    crops = plain.score(paths).crops
    mirrored = plain.score_crops(np.ascontiguousarray(crops[:, :, ::-1]))
    flipped = TrainedRun(tiny_dtl2_run, tta="flip").score_crops(crops)
    for both, one, other in zip(flipped, plain.score_crops(crops), mirrored, strict=True):
        np.testing.assert_allclose(both, (one + other) / 2, atol=1e-6)
        assert not np.allclose(one, other)


def test_dtl1_loads_the_checkpoint_its_test_pass_used_not_a_stale_best_ckpt(tiny_dtl1_head_norm_run, tmp_path):
    from facediag.apply.trained_run import TrainedRun

    run_dir = tmp_path / "rerun"
    shutil.copytree(tiny_dtl1_head_norm_run, run_dir)
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["checkpoint"] == "checkpoints/best.ckpt"
    # a fit in a dir that already held best.ckpt writes best-v1.ckpt and tests that one
    (run_dir / "checkpoints" / "best.ckpt").rename(run_dir / "checkpoints" / "best-v1.ckpt")
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt")
    (run_dir / "metrics.json").write_text(json.dumps({**summary, "checkpoint": "checkpoints/best-v1.ckpt"}))
    expected = own_scores(run_dir)
    run = TrainedRun(run_dir)
    assert run.checkpoint() == run_dir / "checkpoints" / "best-v1.ckpt"
    assert isinstance(run.torch_module(), torch.nn.Module)
    np.testing.assert_allclose(run.score(list(expected.index)).scores, expected.filter(like="score_"), atol=1e-5)
