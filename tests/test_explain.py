"""What a trained run looks at, the way users ask: `python -m facediag.explain`, `predict neighbours=`,
the run report's gallery / mean saliency / feature map (in headless Chromium) and TensorBoard."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, run_python

pytestmark = pytest.mark.slow
torch.set_num_threads(1)


def test_photos(run_dir: Path, n: int) -> list[str]:
    split = pd.read_csv(run_dir / "split.csv")
    return split.loc[split["role"] == "test", "path"].astype(str).tolist()[:n]


test_photos.__test__ = False  # a helper, not a test


def check_contract(out: Path, stem: str, size: int) -> np.ndarray:
    """The four files of one photo; returns the saliency map."""
    crop = np.asarray(Image.open(out / f"{stem}_crop.png"))
    saliency = np.load(out / f"{stem}_saliency.npy")
    landmarks = np.load(out / f"{stem}_landmarks.npy")
    shown = np.asarray(Image.open(out / f"{stem}_overlay.png"))
    assert crop.shape == shown.shape == (size, size, 3) and crop.dtype == np.uint8
    assert saliency.shape == (size, size) and saliency.dtype == np.float32 and np.isfinite(saliency).all()
    assert np.ptp(saliency) > 0
    assert landmarks.shape == (68, 2) and ((landmarks > 0) & (landmarks < size)).all()
    eyes, mouth = landmarks[36:48], landmarks[48:68]
    assert mouth[:, 1].mean() > eyes[:, 1].mean() + size / 6  # an upright face: the mouth well below the eyes
    assert np.abs(shown.astype(int) - crop.astype(int)).mean() > 5  # the heat map is drawn
    return saliency


def test_explain_cli_writes_the_output_contract_and_reports_a_bad_file(tiny_dtl2_run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in test_photos(tiny_dtl2_run, 2):
        (photos / Path(path).name).symlink_to(path)
    (photos / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    done = run_python("-m", "facediag.explain", str(photos), f"run={tiny_dtl2_run}", f"out={out}", fresh=True,
                      env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stderr[-3000:]  # one photo refused
    assert "broken.jpg: refused (error)" in done.stdout and "2 explained, 1 refused" in done.stdout
    summary = pd.read_csv(out / "explain.csv")
    assert len(summary) == 3 and set(summary["method"].dropna()) == {"gradcam"}
    for stem in summary["stem"].dropna():
        check_contract(out, stem, 150)


def test_gradcam_through_the_svm_matches_the_runs_scores_and_changes_when_weights_are_randomised(tiny_dtl2_run):
    from facediag.apply.explain import Explainer
    from facediag.apply.saliency import gradcam, module_scorer, randomized, spearman
    from facediag.apply.trained_run import TrainedRun

    run = TrainedRun(tiny_dtl2_run)
    explainer = Explainer(run)
    explained = explainer.explain(test_photos(tiny_dtl2_run, 2))
    module = explainer.cnn()
    np.testing.assert_allclose(module_scorer(module)(explained.crops), explained.scores, rtol=1e-4, atol=1e-4)
    shuffled = gradcam(randomized(module), explained.crops, explained.targets)
    assert all(np.ptp(m) > 0 for m in explained.saliency)
    rho = [spearman(a, b) for a, b in zip(explained.saliency, shuffled, strict=True)]
    # Adebayo et al.: a saliency method must notice the model is gone (a flat map of the shuffled model counts)
    assert all(r < 0.5 or (np.isnan(r) and np.ptp(m) == 0) for r, m in zip(rho, shuffled, strict=True)), rho


def test_explain_by_occlusion_of_a_named_class(tiny_dtl2_run, tmp_path):
    from facediag.apply.explain import main

    photo = test_photos(tiny_dtl2_run, 1)[0]
    classes = json.loads((tiny_dtl2_run / "metrics.json").read_text())["classes"]
    args = [photo, f"run={tiny_dtl2_run}", "method=occlusion", f"target={classes[0]}", "window=50", f"out={tmp_path}"]
    assert main(args) == 0
    row = pd.read_csv(tmp_path / "explain.csv").iloc[0]
    assert row["explained"] == classes[0] and row["method"] == "occlusion"
    check_contract(tmp_path, row["stem"], 150)
    with pytest.raises(SystemExit, match="not a class"):
        main([photo, f"run={tiny_dtl2_run}", "target=unicorn", f"out={tmp_path}"])
    with pytest.raises(SystemExit, match="method must be one of"):
        main([photo, f"run={tiny_dtl2_run}", "method=lime"])
    with pytest.raises(SystemExit, match="window must be"):
        main([photo, f"run={tiny_dtl2_run}", "method=occlusion", "window=big"])


def test_explain_a_dtl1_run_with_gradcam(tiny_dtl1_run, tmp_path):
    from facediag.apply.explain import main

    photo = test_photos(tiny_dtl1_run, 1)[0]
    assert main([photo, f"run={tiny_dtl1_run}", f"out={tmp_path}"]) == 0
    check_contract(tmp_path, Path(photo).stem, 150)


def test_explain_a_dsift_run_by_occlusion(tiny_dsift_run, tmp_path, monkeypatch):
    import facediag.evaluation.explanations as explanations
    from facediag.apply.explain import main
    from facediag.evaluation import evaluate_run

    # one photo per gallery and class (each ~100 DSIFT scorings): enough to draw them; the report's feature map
    # reads dsift_features.npz
    monkeypatch.setattr(explanations, "MAX_GALLERY", 1)
    monkeypatch.setitem(explanations.MAX_CORRECT, "occlusion", 1)
    evaluate_run(tiny_dsift_run, out_dir=tmp_path / "eval")
    assert (tmp_path / "eval" / "figures" / "feature_map.png").is_file()
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "t-SNE of the dsift features" in report and "Saliency by occlusion sensitivity" in report
    photo = test_photos(tiny_dsift_run, 1)[0]
    # the default method for a run without a CNN; a coarse square (25 scorings, not 100) still makes a map
    assert main([photo, f"run={tiny_dsift_run}", "window=50", f"out={tmp_path / 'out'}"]) == 0
    assert pd.read_csv(tmp_path / "out" / "explain.csv")["method"].iloc[0] == "occlusion"
    check_contract(tmp_path / "out", Path(photo).stem, 150)


def test_predict_lists_the_nearest_training_photos_and_draws_them(tiny_dtl2_run, tmp_path, capsys):
    from facediag.apply.predict import main

    split = pd.read_csv(tiny_dtl2_run / "split.csv")
    known = split[split["role"] == "train"].iloc[0]
    assert main([str(known["path"]), f"run={tiny_dtl2_run}", f"out={tmp_path}", "neighbours=3"]) == 0
    printed = capsys.readouterr().out
    listed = re.findall(r"^  (\d)\. (\S+) +d= *([\d.]+)  (\S+)$", printed, flags=re.M)
    assert [int(r[0]) for r in listed] == [1, 2, 3]
    assert listed[0][3] == known["path"] and float(listed[0][2]) < 1e-3  # a training photo finds itself first
    distances = [float(r[2]) for r in listed]
    assert listed[0][1] == known["label"] and distances == sorted(distances)
    sheet = np.asarray(Image.open(tmp_path / f"{Path(known['path']).stem}_neighbours.png"))
    assert sheet.shape[1] > 4 * sheet.shape[0] / 2 and sheet.std() > 20


def test_neighbours_of_a_dtl1_run_use_the_fine_tuned_features(tiny_dtl1_run, tmp_path):
    from facediag.apply.neighbours import show_neighbours
    from facediag.apply.trained_run import TrainedRun

    run = TrainedRun(tiny_dtl1_run)
    photo = test_photos(tiny_dtl1_run, 1)[0]
    crops = run.preprocessor().faces([photo], run.crop).crops
    written = show_neighbours(run, [photo], crops, 2, tmp_path)
    assert [p.name for p in written] == [f"{Path(photo).stem}_neighbours.png"]
    cached = np.load(tiny_dtl1_run / "features" / "dtl1_train.npz")
    assert cached["features"].shape == (len(cached["paths"]), 256)  # dlib ResNet: the head's 256 inputs


def test_run_report_shows_gallery_mean_saliency_and_feature_map_in_chromium_and_tensorboard(tiny_dtl2_run, tmp_path):
    from tests.test_report import CHROMIUM_FLAGS, PROBE, _chromium

    run = tmp_path / "run"
    shutil.copytree(tiny_dtl2_run, run)
    (run / "tensorboard").mkdir()
    predictions = pd.read_csv(run / "predictions.csv")
    classes = json.loads((run / "metrics.json").read_text())["classes"]
    first = predictions.index[predictions["role"] == "test"][0]
    predictions.loc[first, "pred"] = next(c for c in classes if c != predictions.loc[first, "label"])
    predictions.to_csv(run / "predictions.csv", index=False)  # one misclassified photo for the gallery

    done = run_python("evaluate.py", f"run={run}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "eval" / "report.html").read_text()
    test = predictions[predictions["role"] == "test"]
    split = pd.read_csv(run / "split.csv")
    wrong = int((test["label"] != test["pred"]).sum())
    for caption in (f"misclassified test photos ({wrong} of {wrong})", "Mean saliency per class",
                    f"t-SNE of the dtl2 features: {int(split['role'].isin(['train', 'val']).sum())} train/val, "
                    f"{len(test)} test photos"):
        assert caption in page
    for png in ("misclassified.png", "mean_saliency.png", "feature_map.png"):
        assert (tmp_path / "eval" / "figures" / png).is_file()

    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    chromium = _chromium()
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
               "--dump-dom", probed.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120)
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert probe, dom.stderr[-2000:]
    images = json.loads(probe.group(1).replace("&quot;", '"'))["images"]
    assert len(images) == page.count("<img ") >= 5  # confusion, ROC, gallery, mean saliency, feature map
    assert all(int(w) > 100 and int(h) > 100 for w, h in (s.split("x") for s in images))
    assert "What the model looks at" in dom.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert {"explain/misclassified", "explain/feature_map"} <= set(events.Tags()["images"])


def test_explainer_refuses_gradcam_for_a_run_without_a_cnn_and_names_repeated_stems_apart(tmp_path):
    from types import SimpleNamespace

    from facediag.apply.explain import Explainer, unique_stems
    from facediag.apply.predict import expand

    dsift = SimpleNamespace(strategy="dsift", classes=["a", "b"], predictor=SimpleNamespace(has_cnn=False))
    with pytest.raises(ValueError, match="method=occlusion"):
        Explainer(dsift, "gradcam")
    assert Explainer(dsift).method == "occlusion"
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "face.jpg").write_bytes(b"")
    (tmp_path / "x" / "notes.txt").write_text("not a photo")
    found, others = expand([str(tmp_path)])
    assert [Path(p).parent.name for p in found] == ["x", "y"]
    assert [Path(p).name for p, *_ in others] == ["notes.txt"]
    assert list(unique_stems(found).values()) == ["face", "y_face"]
