"""The app (`python -m facediag.app`): launched once per session in this process on a free 127.0.0.1 port over the
tiny DTL2 run, then used as clients use it: ``gradio_client`` against ``/predict`` and ``/batch``, raw HTTP with a
path the client never uploaded, and the system's headless Chromium through Playwright (a screenshot is saved)."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import run_python

# found, not imported: importing gradio takes seconds, and every worker collects this file
pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("gradio", "gradio_client")),
                                reason="gradio is not installed (pip install -e '.[app]')")


@pytest.fixture(scope="session")
def app(tiny_dtl2_run):
    """(service, URL) of the app serving the tiny DTL2 run, started once."""
    from facediag.app.service import RunService
    from facediag.app.ui import launch

    service = RunService(tiny_dtl2_run)
    page, url = launch([service], block=False, quiet=True)
    yield service, url
    page.close()


@pytest.fixture(scope="session")
def client(app):
    from gradio_client import Client

    return Client(app[1], verbose=False)


@pytest.fixture(scope="session")
def test_faces(tiny_dtl2_run) -> pd.DataFrame:
    """Neutral London photos of the tiny run's test people (never seen in training): ``path``, ``label`` and the
    run's own prediction ``pred`` (predictions.csv), those it got right first."""
    predictions = pd.read_csv(tiny_dtl2_run / "predictions.csv")
    test = predictions[(predictions["role"] == "test") & predictions["path"].str.contains("/neutral/")]
    assert len(test) >= 2 and (test["pred"] == test["label"]).any()
    right = test.assign(right=test["pred"] == test["label"])
    return right.sort_values("right", ascending=False, kind="stable").reset_index(drop=True)


def predict(client, *paths: Path | str, method: str = "gradcam") -> tuple:
    from gradio_client import handle_file

    return client.predict([handle_file(str(p)) for p in paths], method, None, api_name="/predict")


def test_predict_api_gives_a_test_persons_class_probabilities_overlay_and_flags(client, app, test_faces):
    photo, label = test_faces.loc[0, "path"], test_faces.loc[0, "label"]
    records, table, _, chart, crop, overlay, flags, _ = predict(client, photo)
    (record,) = records
    assert record["name"] == Path(photo).name and record["status"] in ("ok", "flagged")
    assert record["top1"] == label and chart["label"] == label
    assert set(record["probabilities"]) == set(app[0].classes)
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert record["saliency_method"] == "gradcam" and isinstance(record["flags"], list)
    size = app[0].run.crop.size
    assert Image.open(crop).size == (size, size) and Image.open(overlay).size == (size, size)
    assert "/" not in record["name"] and "gradio" not in json.dumps(record)  # no folder of this machine is sent
    assert f"status `{record['status']}`" in flags


def test_a_training_photo_is_flagged_in_words(client, tiny_dtl2_run):
    split = pd.read_csv(tiny_dtl2_run / "split.csv")
    photo = split.loc[split["role"] == "train", "path"].iloc[0]
    records, _, _, _, _, _, flags, _ = predict(client, photo)
    assert records[0]["status"] == "flagged" and "overlaps_training_person" in records[0]["flags"]
    assert "in the model's training data" in flags and "in the model's training data" in records[0]["reason"]


def test_nearest_training_photos_start_with_the_photo_itself(app, tiny_dtl2_run):
    service = app[0]
    split = pd.read_csv(tiny_dtl2_run / "split.csv")
    row = split[split["role"] == "train"].iloc[0]
    with service.lock:
        crop = service.assessor.assess_image(row["path"]).crop
        neighbours = service.neighbours(crop)
    assert len(neighbours) == service.k_neighbours
    first_crop, caption = neighbours[0]
    assert caption == f"{row['label']} (distance 0.0)" and first_crop.shape == crop.shape
    assert service.show_neighbours is False  # off unless show_neighbours=true: the page hides them


def test_occlusion_method_explains_the_same_prediction(client, test_faces):
    photo = test_faces.loc[1, "path"]
    (gradcam,) = predict(client, photo)[0]
    (occlusion,) = predict(client, photo, method="occlusion")[0]
    assert occlusion["saliency_method"].startswith("occlusion")
    assert occlusion["probabilities"] == gradcam["probabilities"]


def test_bad_files_and_a_decompression_bomb_get_messages_not_tracebacks(client, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 8000)).save(bomb)  # 64 million pixels in a few kB
    nature = tmp_path / "sky.png"
    Image.fromarray(np.full((200, 300, 3), (110, 160, 230), np.uint8)).save(nature)
    records = {r["name"]: r for r in predict(client, broken, bomb, nature)[0]}
    assert records["broken.jpg"]["status"] == "error" and "not a recognised image" in records["broken.jpg"]["reason"]
    assert records["bomb.png"]["status"] == "error" and "exceeds the limit" in records["bomb.png"]["reason"]
    assert records["sky.png"]["status"] == "no_face" and not records["sky.png"]["probabilities"]
    assert not any("Traceback" in r["reason"] or str(tmp_path) in r["reason"] for r in records.values())


def test_no_photo_gets_a_message(client):
    from gradio_client.exceptions import AppError

    from facediag.app.ui import NO_PHOTOS

    with pytest.raises(AppError, match="Drop one or more photos"):
        client.predict([], "gradcam", None, api_name="/predict")
    assert "photos" in NO_PHOTOS


def test_a_path_the_client_did_not_upload_is_refused(app, test_faces):
    import httpx

    base = f"{app[1]}gradio_api"
    body = {"data": [[{"path": test_faces.loc[0, "path"], "meta": {"_type": "gradio.FileData"}}], "gradcam", None]}
    event = httpx.post(f"{base}/call/predict", json=body, timeout=60).json()["event_id"]
    answer = httpx.get(f"{base}/call/predict/{event}", timeout=120).text
    assert "event: error" in answer and "probabilities" not in answer and "Traceback" not in answer


def test_checked_upload_reads_only_the_upload_folder(tmp_path, test_faces):
    from facediag.app.service import UploadError, checked_upload

    inside = tmp_path / "uploads" / "a.jpg"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    assert checked_upload(inside, tmp_path / "uploads") == inside.resolve()
    for outside in (test_faces.loc[0, "path"], tmp_path / "uploads" / ".." / "a.jpg"):
        with pytest.raises(UploadError, match="not an uploaded file"):
            checked_upload(outside, tmp_path / "uploads")


def zipped(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_a_zip_is_unpacked_inside_its_folder_with_every_member_accounted_for(tmp_path, test_faces):
    from facediag.app.service import MAX_ZIP_MEMBERS, UploadError, unzip

    face = Path(test_faces.loc[0, "path"]).read_bytes()
    archive = zipped(tmp_path / "photos.zip", {"a/face.jpg": face, "../../escape.jpg": face, "notes.txt": b"hi"})
    into = tmp_path / "into"
    into.mkdir()
    found, skipped = unzip(archive, into)
    assert [u.name for u in found] == ["photos.zip/a/face.jpg", "photos.zip/../../escape.jpg"]
    assert all(Path(u.path).parent == into for u in found) and not (tmp_path.parent / "escape.jpg").exists()
    assert skipped == [("photos.zip/notes.txt", "not an image file (by its extension)")]
    many = zipped(tmp_path / "many.zip", {f"{i}.jpg": b"" for i in range(MAX_ZIP_MEMBERS + 1)})
    with pytest.raises(UploadError, match="files; at most"):
        unzip(many, into)
    (tmp_path / "fake.zip").write_bytes(b"PK not really")
    with pytest.raises(UploadError, match="not a readable zip"):
        unzip(tmp_path / "fake.zip", into)


def test_batch_returns_the_predictions_csv_with_a_row_per_file(client, app, test_faces, tmp_path):
    from gradio_client import handle_file

    faces = [Path(p) for p in test_faces["path"][:2]]
    archive = zipped(tmp_path / "two.zip", {f.name: f.read_bytes() for f in faces} | {"readme.md": b"x"})
    csv, _ = client.predict([handle_file(str(archive))], None, api_name="/batch")
    table = pd.read_csv(csv)
    assert len(table) == 3 and set(table["status"]) <= {"ok", "flagged", "error"}
    scored = table[table["status"] != "error"]
    assert list(scored["top1"]) == list(test_faces["pred"][:2])  # the run's own prediction of each
    from facediag.apply.assess import columns

    assert list(table.columns) == columns(app[0].classes)  # facediag.predict's CSV
    assert "two.zip/readme.md" in set(table["path"])


def test_concurrent_requests_each_get_their_own_answer(client, test_faces):
    from gradio_client import handle_file

    photos = list(test_faces["path"][:2])
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(lambda p=p: client.predict([handle_file(p)], "gradcam", None, api_name="/predict"))
                for p in photos]
        answers = [job.result(timeout=300)[0][0] for job in jobs]
    assert [a["name"] for a in answers] == [Path(p).name for p in photos]
    assert [a["top1"] for a in answers] == list(test_faces["pred"][:2])


def test_model_card_shows_split_metrics_controls_audit_external_licences_and_notice(tiny_dtl2_run, tmp_path):
    from facediag.app.model_card import model_card

    run = tmp_path / "run"
    run.mkdir()
    for name in ("metrics.json", "run_config.yaml", "split.csv"):
        shutil.copy(tiny_dtl2_run / name, run / name)
    card = model_card(run)
    metrics = json.loads((run / "metrics.json").read_text())
    low, high = metrics["accuracy_ci"]
    assert f"{metrics['accuracy']:.3f} [{low:.3f}-{high:.3f}]" in card
    assert "| face_blind |" in card and "| capture_only |" in card and "Platt" in card
    assert "CC BY 4.0" in card and card.count("Research tool, not a diagnosis.") == 2
    assert "No data audit" in card and "No external validation" in card
    pd.DataFrame({"path": ["a", "b"], "problems": ["", "no face"]}).to_csv(run / "audit.csv", index=False)
    external = run / "external" / "site2"
    external.mkdir(parents=True)
    (external / "external_predictions.csv").write_text("path\n")
    (external / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "accuracy_ci": [0.5, 0.9], "n": 20}))
    card = model_card(run)
    assert "2 files, 1 needing a look" in card and "no face: 1" in card
    assert "`external/site2`: accuracy 0.750 [0.500-0.900] on 20 photos" in card


def test_command_line_refuses_a_missing_run_with_one_message(tmp_path):
    missing = run_python("-m", "facediag.app", f"run={tmp_path / 'nothing'}")
    assert missing.returncode == 2 and "error:" in missing.stderr and "Traceback" not in missing.stderr
    usage = run_python("-m", "facediag.app", "port=80")
    assert usage.returncode != 0 and "run=<run dir> is required" in usage.stderr


def test_headless_chromium_shows_a_london_photos_class_and_saliency(app, test_faces, tmp_path):
    from facediag.app.screenshot import browse, system_chromium

    if system_chromium() is None:
        pytest.skip("Chromium not installed (apt-get install chromium): the page is not browser-checked")
    pytest.importorskip("playwright", reason="pip install playwright (it drives the system Chromium)")
    photo, label = test_faces.loc[0, "path"], test_faces.loc[0, "label"]
    shot = tmp_path / "app.png"
    seen = browse(app[1], [photo], shot)
    assert seen.top_class == label and label in seen.probabilities
    assert seen.saliency_size == (app[0].run.crop.size,) * 2
    assert "status" in seen.flags
    picture = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"))
    assert picture.shape[1] >= 1000 and picture.std() > 10  # a rendered page, not a blank one
