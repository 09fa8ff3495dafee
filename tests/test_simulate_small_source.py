"""facediag.simulate on a small London-like source: sixteen London people, photos and hand-placed points shrunk
five times, written into a temporary folder with the London layout (``london_info.csv``, ``neutral/``,
``landmarks/``). The figure, the replayed measures of an older tree, a design's ideal-observer ceiling and the
request checks run on it in well under a second each (no detection, no full-size warp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facediag.core.errors import UserError
from facediag.simulate.conditions import CONDITIONS
from facediag.simulate.measures import add_measures, design_ceiling, design_measures
from facediag.simulate.source import london_faces, measure_table
from facediag.simulate.tree import HEALTHY, CaptureCue, Settings, build_tree, cast, check_request
from tests.conftest import run_python

SHRINK = 5
PEOPLE_PER_SEX = 8
GEOMETRIC = ("hypertelorism", "micrognathia")


@pytest.fixture(scope="module")
def small_london(london_dir: Path, tmp_path_factory) -> Path:
    """A London-layout folder of 16 people (8 women, 8 men): neutral photos at 1/5 size, landmarks scaled alike."""
    root = tmp_path_factory.mktemp("small_data") / "london-faces"
    (root / "neutral").mkdir(parents=True)
    (root / "landmarks").mkdir()
    info = pd.read_csv(london_dir / "london_info.csv", dtype=str, keep_default_na=False)
    chosen = pd.concat([info[info["face_gender"] == sex].head(PEOPLE_PER_SEX) for sex in ("female", "male")])
    chosen.to_csv(root / "london_info.csv", index=False)
    for face_id in chosen["face_id"]:
        stem = f"{face_id.zfill(3)}_03"
        with Image.open(london_dir / "neutral" / f"{stem}.jpg") as photo:
            photo.reduce(SHRINK).save(root / "neutral" / f"{stem}.jpg", quality=92)
        lines = (london_dir / "landmarks" / f"{stem}.tem").read_text().split("\n")
        count = int(lines[0])
        points = [[float(v) / SHRINK for v in line.split()[:2]] for line in lines[1 : 1 + count]]
        (root / "landmarks" / f"{stem}.tem").write_text(f"{count}\n" + "\n".join(f"{x}\t{y}" for x, y in points))
    return root


@pytest.fixture(scope="module")
def small_faces(small_london: Path):
    return london_faces(small_london)


@pytest.fixture(scope="module")
def older_tree(small_faces, tmp_path_factory) -> Path:
    """A 2-condition tree (2 SD, jitter 0.3, capture cue on healthy) whose truth.csv lost its measure columns, as
    trees written before the measures existed."""
    settings = Settings(strength=2.0, seed=4, conditions=GEOMETRIC, capture_cue="healthy:60,2")
    table = measure_table(small_faces, settings.chosen())
    out = tmp_path_factory.mktemp("trees") / "older"
    out.mkdir()  # an empty folder is accepted (and replaced)
    (out.with_name("older.partial") / HEALTHY).mkdir(parents=True)  # left by an interrupted build: replaced
    (out.with_name("older.partial") / HEALTHY / "stale.jpg").write_bytes(b"")
    truth = build_tree(out, small_faces, table, settings, "london")
    truth.drop(columns=[c for c in truth.columns if c.startswith("measure_")]).to_csv(out / "truth.csv", index=False)
    return out


def test_a_tree_replaces_what_an_interrupted_build_left(older_tree):
    assert not older_tree.with_name("older.partial").exists() and not (older_tree / HEALTHY / "stale.jpg").exists()
    assert len(list(older_tree.glob("*/*.jpg"))) == 2 * PEOPLE_PER_SEX


def test_the_small_source_reads_its_people_with_sex_and_189_points_at_the_photo_scale(small_faces):
    assert len(small_faces) == 2 * PEOPLE_PER_SEX
    assert {f.meta["sex"] for f in small_faces} == {"female", "male"}
    face = small_faces[0]
    with Image.open(face.path) as photo:
        width, height = photo.size
    assert face.points.shape == (189, 2) and (width, height) == (270, 270)
    assert 0 < face.points[:, 0].min() and face.points[:, 0].max() < width


def test_the_condition_figure_cli_draws_a_condition_as_source_strengths_and_truth_mask(
    small_london, tmp_path
):
    figure = tmp_path / "figs" / "conditions.jpg"
    subject = pd.read_csv(small_london / "london_info.csv", dtype=str)["face_id"].iloc[0]
    result = run_python("-m", "facediag.simulate", f"figure={figure}", f"london_root={small_london}",
                        f"figure_subject={subject}", "conditions=[hypertelorism]",
                        f"hydra.run.dir={tmp_path / 'log'}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {figure}" in result.stdout
    with Image.open(figure) as image:
        assert image.format == "JPEG"
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # one row of four tiles (source, 1 SD, 3 SD, truth mask) with the mask's red outline drawn
    assert pixels.shape[1] > 3 * pixels.shape[0] > 300
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() > 100


def test_the_figure_names_a_subject_that_is_not_in_the_source(small_faces, tmp_path):
    from facediag.simulate.figure import condition_figure

    conditions = [CONDITIONS["hypertelorism"]]
    table = measure_table(small_faces, conditions)
    with pytest.raises(UserError, match="figure_subject='999': no such source person"):
        condition_figure(small_faces, table, conditions, tmp_path / "f.jpg", "999")
    assert not (tmp_path / "f.jpg").exists()


def test_the_outline_tints_the_mask_red_and_leaves_the_rest_unchanged():
    from facediag.simulate.figure import outlined

    image = np.full((40, 40, 3), 100, dtype=np.uint8)
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 10:30] = True
    out = outlined(image, mask)
    assert (out[0, 0] == 100).all() and (out[20, 20] == [146, 70, 70]).all()  # 0.7 x 100 + 0.3 x (255, 0, 0)
    assert (out[10, 20] == [255, 0, 0]).all()  # the edge


def test_replayed_measures_match_the_ones_the_tree_wrote_when_it_was_made(older_tree, small_faces, small_london):
    assert not any(c.startswith("measure_") for c in pd.read_csv(older_tree / "truth.csv").columns)
    truth = add_measures(older_tree, small_london)
    written = pd.read_csv(older_tree / "truth.csv", dtype={"subject": str})
    assert list(written["path"]) == list(truth["path"]) and len(written) == 2 * PEOPLE_PER_SEX
    by_class = written.groupby("class")[["measure_hypertelorism", "measure_micrognathia"]].mean()
    # each condition's own measure sits about 2 SD above the healthy people's
    assert by_class.loc["hypertelorism", "measure_hypertelorism"] - by_class.loc[HEALTHY, "measure_hypertelorism"] > 1
    assert by_class.loc["micrognathia", "measure_micrognathia"] - by_class.loc[HEALTHY, "measure_micrognathia"] > 1
    # the design's measures (no photo read) are the same numbers: the same draws, the same landmarks
    made = json.loads((older_tree / "simulate.json").read_text())
    settings = Settings(strength=made["strength"], seed=made["seed"], conditions=tuple(made["conditions"]),
                        capture_cue=made["capture_cue"])  # fmt: skip
    design = design_measures(small_faces, settings, pd.read_csv(older_tree / "conditions.csv")).set_index("path")
    replay = written.set_index("path")
    assert np.allclose(design.loc[replay.index, "measure_hypertelorism"], replay["measure_hypertelorism"], atol=1e-4)
    assert (written.loc[written["class"] == HEALTHY, "jpeg_quality"] == 60).all()
    assert (written.loc[written["class"] != HEALTHY, "jpeg_quality"] == 95).all()


def test_a_tree_made_by_other_code_is_refused_and_its_truth_kept(older_tree, small_london, tmp_path):
    import shutil

    tree = tmp_path / "other"
    shutil.copytree(older_tree, tree)
    truth = pd.read_csv(tree / "truth.csv")
    truth["jitter_hypertelorism"] += 0.5
    truth.to_csv(tree / "truth.csv", index=False)
    before = (tree / "truth.csv").read_bytes()
    with pytest.raises(ValueError, match="recorded .*: it was made by other code"):
        add_measures(tree, small_london)
    assert (tree / "truth.csv").read_bytes() == before
    made = json.loads((tree / "simulate.json").read_text())
    (tree / "simulate.json").write_text(json.dumps({**made, "source": "/my/photos"}))
    with pytest.raises(ValueError, match="only London trees can be replayed"):
        add_measures(tree, small_london)


def test_the_measures_cli_adds_the_columns_and_prints_them_or_its_usage(older_tree, small_london, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(older_tree, tree)
    env = {"FACEDIAG_DATA_DIR": str(small_london.parent)}
    result = run_python("-m", "facediag.simulate.measures", str(tree), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{tree}: 16 rows, columns measure_hypertelorism, measure_micrognathia" in result.stdout
    assert "measure_micrognathia" in pd.read_csv(tree / "truth.csv").columns
    usage = run_python("-m", "facediag.simulate.measures", env=env)
    assert usage.returncode == 1 and "usage: python -m facediag.simulate.measures" in usage.stderr


def test_a_design_s_ceiling_is_perfect_at_4_sd_and_needs_skin_values_only_for_skin_tone(small_london, small_faces):
    ceiling = design_ceiling("hypertelorism", [4.0], small_london, sizes=(None,))
    assert ceiling[["strength", "train_subjects_per_class", "n", "accuracy"]].to_dict("records") == [
        {"strength": 4.0, "train_subjects_per_class": "all", "n": 2 * PEOPLE_PER_SEX, "accuracy": 1.0}]
    assert ceiling["accuracy_lo"].iloc[0] > 0.7
    settings = Settings(conditions=("skin_tone",))
    table = measure_table(small_faces, settings.chosen())
    with pytest.raises(ValueError, match="skin_tone: the source faces' skin yellowness"):
        design_measures(small_faces, settings, table)
    skin = {f.subject: 0.0 for f in small_faces}
    rows = design_measures(small_faces, settings, table, skin)
    sick = rows[rows["class"] == "skin_tone"]["measure_skin_tone"]
    assert len(rows) == 2 * PEOPLE_PER_SEX and sick.mean() > rows[rows["class"] == HEALTHY]["measure_skin_tone"].mean()


def test_the_ceiling_cli_prints_a_row_per_strength_and_training_size_and_the_ceiling_rises(small_london):
    result = run_python("-m", "facediag.simulate.measures", "ceiling", "hypertelorism", "0,3",
                        env={"FACEDIAG_DATA_DIR": str(small_london.parent)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.strip().splitlines()]
    assert lines[0] == ["strength", "train_subjects_per_class", "n", "accuracy", "accuracy_lo", "accuracy_hi"]
    accuracy = {(row[0], row[1]): float(row[3]) for row in lines[1:]}
    assert set(accuracy) == {("0.000", "all"), ("0.000", "5"), ("3.000", "all"), ("3.000", "5")}
    assert accuracy[("3.000", "all")] > accuracy[("0.000", "all")] and accuracy[("3.000", "all")] > 0.8


@pytest.mark.parametrize(("text", "message"), [
    ("healthy", "expected <class>:<jpeg quality>,<noise>"),
    ("healthy:70", "expected <class>:<jpeg quality>,<noise>"),
    ("healthy:0,3", "JPEG quality must be 1-100 and noise >= 0"),
    ("healthy:70,-1", "JPEG quality must be 1-100 and noise >= 0"),
])  # fmt: skip
def test_a_malformed_capture_cue_is_refused_with_the_expected_form(text, message):
    with pytest.raises(UserError, match=message):
        CaptureCue.parse(text)


def test_a_request_names_what_is_wrong_before_any_face_is_read(tmp_path, small_faces):
    with pytest.raises(UserError, match="each condition once"):
        check_request(tmp_path / "new", Settings(conditions=("midface", "midface")))
    with pytest.raises(UserError, match="people=1: choose 2 to 16"):
        cast(small_faces, [HEALTHY, "midface"], Settings(people=1))
    with pytest.raises(UserError, match="4 people for 3 classes: at least two people per class"):
        cast(small_faces, [HEALTHY, "midface", "micrognathia"], Settings(people=4))
    assert CaptureCue.parse("healthy:70,3") == CaptureCue("healthy", 70, 3.0)
