"""facediag.simulate: simulated conditions on London faces, through the CLI as a user runs it.

Trees are small (a seeded handful of people) and built once per session; the SD of every measure is still taken
over all 102 London faces, as in a full tree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facediag.simulate.anatomy import named_points
from facediag.simulate.conditions import CONDITIONS
from facediag.simulate.tree import HEALTHY, TRUTH_DIR, Settings, plan
from tests.owndata import link, run_cli

pytestmark = pytest.mark.slow

DEFAULT = ["hypertelorism", "midface", "micrognathia", "skin_tone"]
#: the share of a simulated change that dlib's 68-point landmarker re-detects, per face and on average: its shape
#: model pulls atypical shapes towards the mean face (measured at 3 SD on London faces: 0.4-0.8 on average;
#: on natural London variation its slope against the hand-placed points is 0.54-0.98, docs/simulate.md)
MEAN_SEEN = (0.4, 1.2)


def simulate(out: Path, *overrides: str) -> Path:
    """``python -m facediag.simulate out=<out> ...`` (its Hydra log beside it); fails the test on an error."""
    result = run_cli("-m", "facediag.simulate", f"out={out}", f"hydra.run.dir={out.parent / (out.name + '_log')}",
                     *overrides)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out


def audit(tree: Path, run_dir: Path, *overrides: str) -> str:
    """stdout of ``python -m facediag.audit`` on a simulated tree; one face per class in the contact sheet (its
    eight per class: tests/test_audit.py)."""
    result = run_cli("-m", "facediag.audit", "data=folder", f"data.root={tree}",
                     f"data.subjects_csv={tree}/subjects.csv", f"hydra.run.dir={run_dir}", "preprocess.progress=false",
                     "thumbnails=1", *overrides)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="session")
def strong_tree(london_dir, tmp_path_factory) -> Path:
    """3 SD, no jitter, no pose change: 15 people, three per class."""
    out = tmp_path_factory.mktemp("simulate") / "strong"
    return simulate(out, "strength=3", "people=15", "seed=3", "jitter=0", "pose.rotation=0", "pose.scale=0",
                    "pose.shift=0")  # fmt: skip


@pytest.fixture(scope="session")
def null_tree(london_dir, tmp_path_factory) -> Path:
    """strength 0: five classes of four people that differ in nothing."""
    return simulate(tmp_path_factory.mktemp("simulate") / "null", "strength=0", "people=20", "seed=1")


@pytest.fixture(scope="session")
def landmarker():
    """The project's own landmarker (conf/preprocess/dlib.yaml), no cache."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from facediag.core.config import CONFIG_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("simulate", overrides=["preprocess.progress=false", "preprocess.n_workers=1",
                                             "preprocess.cache_dir=null"])  # fmt: skip
    return instantiate(cfg.preprocess)


def test_a_tree_holds_one_person_per_class_with_its_truth_beside_the_class_folders(strong_tree):
    from facediag.data.folder import FolderDataset

    truth = pd.read_csv(strong_tree / "truth.csv", dtype={"subject": str})
    subjects = pd.read_csv(strong_tree / "subjects.csv", dtype={"subject": str})
    assert sorted(p.name for p in strong_tree.iterdir() if p.is_dir()) == sorted([TRUTH_DIR, HEALTHY, *DEFAULT])
    assert truth["class"].value_counts().to_dict() == {c: 3 for c in [HEALTHY, *DEFAULT]}
    assert truth["subject"].is_unique and set(truth["path"]) == set(subjects["path"])
    assert {"sex", "age", "ethnicity"} <= set(subjects.columns)
    for _, row in truth.iterrows():
        assert (strong_tree / row["path"]).is_file()
        mask = np.asarray(Image.open(strong_tree / row["mask"])) > 0
        assert mask.any() == (row["class"] != HEALTHY), row["path"]  # a region for every condition, none for healthy
    records = FolderDataset(strong_tree, subjects_csv=strong_tree / "subjects.csv").records()
    assert len(records) == 15 and {r.subject_source for r in records} == {"csv"}
    # no jitter: the hand-placed landmarks moved by exactly the 3 SD claimed
    changes = truth.loc[truth["class"] != HEALTHY].set_index("class")["change_sd"]
    geometric = [c for c in DEFAULT if CONDITIONS[c].kind == "geometric"]
    assert np.allclose(changes.loc[geometric], 3.0, atol=1e-3)


def test_the_warp_moves_each_measure_by_the_sd_it_claims_as_the_projects_landmarker_sees_it(
    strong_tree, london_dir, landmarker
):
    from facediag.core.imageio import read_rgb
    from facediag.simulate.appearance import skin_yellowness

    truth = pd.read_csv(strong_tree / "truth.csv", dtype={"subject": str})
    sources = pd.read_csv(strong_tree / "subjects.csv", dtype={"subject": str}).set_index("path")["source_file"]
    sd = pd.read_csv(strong_tree / "conditions.csv").set_index("condition")["sd"]
    for name in DEFAULT:
        condition = CONDITIONS[name]
        seen = []
        for path in truth.loc[truth["class"] == name, "path"]:
            before_path, after_path = london_dir / "neutral" / sources[path], strong_tree / path
            before, after = landmarker.landmarks([str(before_path), str(after_path)])
            if condition.kind == "appearance":
                change = skin_yellowness(read_rgb(after_path), after.landmarks) - skin_yellowness(
                    read_rgb(before_path), before.landmarks)  # fmt: skip
            else:
                change = condition.measure(named_points(after.landmarks)) - condition.measure(
                    named_points(before.landmarks))  # fmt: skip
            seen.append(condition.sign * change / sd[name] / 3.0)
        if condition.kind == "appearance":  # colour is read off the pixels: all of it is seen
            assert np.allclose(seen, 1.0, atol=0.1), (name, seen)
        else:
            assert min(seen) > 0 and MEAN_SEEN[0] <= np.mean(seen) <= MEAN_SEEN[1], (name, seen)


def test_healthy_jitter_moves_every_measure_by_zero_on_average(london_dir):
    from scipy import stats

    from facediag.simulate.source import london_faces

    faces = london_faces(london_dir)
    # the first release's five (eye_opening's jitter: test_a_syndrome_tree_s_healthy_jitter_...)
    conditions = [c for c in CONDITIONS.values() if c.kind == "geometric" and c.name != "eye_opening"]
    sd = pd.Series({c.name: np.std([c.measure(named_points(f.points)) for f in faces], ddof=1) for c in conditions})
    settings = Settings(strength=2.0, conditions=tuple(sd.index))
    changes: dict[str, list[float]] = {c.name: [] for c in conditions}
    own: list[float] = []
    for i, face in enumerate(faces):
        for seed in range(3):
            rng = np.random.default_rng([seed, i])
            healthy = plan(face, HEALTHY, conditions, sd, settings, rng, (1350, 1350))
            for c in conditions:
                moved = c.measure(named_points(healthy.target)) - c.measure(named_points(face.points))
                changes[c.name].append(c.sign * moved / sd[c.name])
            sick = conditions[(i + seed) % len(conditions)]
            drawn = plan(face, sick.name, conditions, sd, settings, rng, (1350, 1350))
            moved = sick.measure(named_points(drawn.target)) - sick.measure(named_points(face.points))
            own.append(sick.sign * moved / sd[sick.name] - (drawn.amounts[sick.name] - settings.strength))
    for name, values in changes.items():
        values = np.asarray(values)
        assert stats.ttest_1samp(values, 0.0).pvalue > 0.01, (name, values.mean())
        assert 0.2 < values.std() < 0.45, (name, values.std())  # the jitter's 0.3 SD, plus the other modes' overlap
    # a condition's offset comes on top: 2 SD more than its own jitter, the other conditions' jitter crossing over
    assert abs(np.mean(own) - 2.0) < 0.05 and np.std(own) < 0.2


def test_a_null_tree_has_no_capture_cue_the_audit_can_find(null_tree, tmp_path):
    truth = pd.read_csv(null_tree / "truth.csv")
    assert set(truth["strength"]) == {0.0} and truth["class"].nunique() == 5
    printed = audit(null_tree, tmp_path / "audit")
    assert "WARNING: the class can be told" not in printed, printed
    cues = (tmp_path / "audit" / "audit.md").read_text()
    assert "face masked: CNN" in cues


def test_a_capture_cue_tree_is_flagged_by_the_audit(london_dir, tmp_path):
    # ten people (fewer than the null tree's: the cue must still be found); the flag comes from the saved files,
    # so the audit's CNN check is left out (the null tree's audit runs it)
    tree = simulate(tmp_path / "cue", "strength=0", "people=10", "conditions=[upslant]", "capture_cue=[healthy:60,4]")
    truth = pd.read_csv(tree / "truth.csv")
    assert set(truth.loc[truth["class"] == HEALTHY, "jpeg_quality"]) == {60}
    assert set(truth.loc[truth["class"] != HEALTHY, "jpeg_quality"]) == {95}
    printed = audit(tree, tmp_path / "audit", "face_blind_check=false")
    assert "WARNING: the class can be told" in printed and "jpeg_quality" in printed, printed


def test_a_folder_of_own_photos_is_landmarked_and_its_bad_files_listed(london_dir, tmp_path):
    folder = tmp_path / "controls"
    for face_id in range(1, 13):
        link(london_dir / "neutral" / f"{face_id:03d}_03.jpg", folder / f"person{face_id:02d}.jpg")
    (folder / "notes.txt").write_text("not a photo")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    tree = simulate(tmp_path / "own", f"source={folder}", "strength=2", "conditions=[hypertelorism,wide_mouth]")
    truth = pd.read_csv(tree / "truth.csv")
    assert len(truth) == 12 and truth["class"].value_counts().to_dict() == {HEALTHY: 4, "hypertelorism": 4,
                                                                             "wide_mouth": 4}  # fmt: skip
    skipped = pd.read_csv(tree / "skipped.csv")
    assert {Path(p).name for p in skipped["path"]} == {"notes.txt", "broken.jpg"}
    table = pd.read_csv(tree / "conditions.csv")
    assert set(table["n_faces"]) == {12}


@pytest.mark.parametrize(
    ("override", "message"),
    [("capture_cue=[sick:60,2]", "is not one of"), ("conditions=[dimples]", "choose one or more of"),
     ("strength=-1", "0 or more")],
)  # fmt: skip
def test_a_wrong_argument_is_refused_with_a_message_before_any_work(tmp_path, override, message):
    result = run_cli("-m", "facediag.simulate", f"out={tmp_path / 'tree'}", f"hydra.run.dir={tmp_path / 'log'}",
                     override, "london_root=/nonexistent")  # fmt: skip
    assert result.returncode != 0 and message in result.stderr + result.stdout
    assert not (tmp_path / "tree").exists()


def test_a_folder_that_is_not_empty_is_never_overwritten(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "keep.txt").write_text("mine")
    result = run_cli("-m", "facediag.simulate", f"out={tmp_path / 'tree'}", f"hydra.run.dir={tmp_path / 'log'}")
    assert result.returncode != 0 and "not an empty folder" in result.stderr + result.stdout
    assert (tmp_path / "tree" / "keep.txt").read_text() == "mine"


def test_a_source_photo_s_skin_tone_is_read_once_per_process_and_again_once_the_file_changes(london_dir, tmp_path,
                                                                                            monkeypatch):
    import shutil

    from facediag.core import imageio
    from facediag.simulate.anatomy import read_tem
    from facediag.simulate.appearance import skin_yellowness
    from facediag.simulate.source import Face, source_yellowness

    photo = Path(shutil.copy(london_dir / "neutral" / "001_03.jpg", tmp_path / "001_03.jpg"))
    face = Face("001", photo, read_tem(london_dir / "landmarks" / "001_03.tem"))
    first = source_yellowness(face)
    assert first == skin_yellowness(imageio.read_rgb(photo), face.points)
    read, reads = imageio.read_rgb, []
    monkeypatch.setattr(imageio, "read_rgb", lambda path, *args, **kwargs: reads.append(path) or read(path, *args,
                                                                                                      **kwargs))
    assert source_yellowness(face) == first and reads == []  # the second tree of a process reads no photo
    Image.open(london_dir / "neutral" / "002_03.jpg").save(photo)  # another person's photo under the same name
    assert source_yellowness(face) != first and reads == [photo]


def test_a_source_photo_s_skin_tone_kept_in_the_cache_is_read_by_the_next_process_without_the_photo(
    london_dir, tmp_path, monkeypatch
):
    import shutil

    from facediag.core import imageio
    from facediag.simulate import source
    from facediag.simulate.anatomy import read_tem

    photo = Path(shutil.copy(london_dir / "neutral" / "001_03.jpg", tmp_path / "001_03.jpg"))
    face = source.Face("001", photo, read_tem(london_dir / "landmarks" / "001_03.tem"))
    cache = tmp_path / "cache"
    monkeypatch.setattr(source, "_YELLOWNESS", {})
    first = source.source_yellowness(face, cache)
    assert [p.suffix for p in (cache / source.YELLOWNESS_DIR).iterdir()] == [".txt"]  # no partial file left
    read, reads = imageio.read_rgb, []
    monkeypatch.setattr(imageio, "read_rgb", lambda path, *args, **kwargs: reads.append(path) or read(path, *args,
                                                                                                      **kwargs))
    monkeypatch.setattr(source, "_YELLOWNESS", {})  # a new process
    assert source.source_yellowness(face, cache) == first and reads == []
    moved = source.Face("001", photo, face.points + 1.0)  # other landmarks: another entry
    monkeypatch.setattr(source, "_YELLOWNESS", {})
    assert source.source_yellowness(moved, cache) != first and reads == [photo]
    assert len(list((cache / source.YELLOWNESS_DIR).iterdir())) == 2


@pytest.fixture(scope="module")
def london_sd(london_dir):
    """The London faces and every geometric descriptor's SD over them (skin tone's: a stand-in, landmarks only)."""
    from facediag.simulate.source import london_faces

    faces = london_faces(london_dir)
    geometric = [c for c in CONDITIONS.values() if c.kind == "geometric"]
    sd = {c.name: np.std([c.measure(named_points(f.points)) for f in faces], ddof=1) for c in geometric}
    return faces, pd.Series({**sd, "skin_tone": 2.8})


def test_a_syndrome_moves_each_measure_it_lists_by_the_asked_sd_and_the_tree_s_other_measures_not_at_all(london_sd):
    from facediag.simulate.conditions import SYNDROMES, descriptors_of

    faces, sd = london_sd
    syndromes = list(SYNDROMES.values())
    geometric = [d for d in descriptors_of(syndromes) if d.kind == "geometric"]
    settings = Settings(strength=2.0, conditions=("syndromes",), jitter=0.0, rotation=0.0, scale=0.0, shift=0.0)
    assert settings.conditions == tuple(SYNDROMES)
    for i, face in enumerate(faces[:8]):
        for syndrome in syndromes:
            drawn = plan(face, syndrome.name, syndromes, sd, settings, np.random.default_rng(i), (1350, 1350))
            listed = {d.name for d in syndrome.descriptors}
            for d in geometric:
                moved = d.sign * (d.measure(named_points(drawn.target)) - d.measure(named_points(face.points)))
                assert np.isclose(moved / sd[d.name], 2.0 if d.name in listed else 0.0, atol=1e-3), (syndrome.name,
                                                                                                     d.name)


def test_the_syndromes_share_at_most_one_descriptor_and_a_named_set_names_the_same_tree():
    from facediag.simulate.conditions import SYNDROMES, condition_names
    from facediag.simulate.dataset import tree_name

    parts = {name: set(c.parts) for name, c in SYNDROMES.items()}
    assert all(len(p) == 3 for p in parts.values())
    assert all(len(parts[a] & parts[b]) <= 1 for a in parts for b in parts if a < b)
    assert condition_names("syndromes") == condition_names(["syndromes"]) == tuple(SYNDROMES)
    assert tree_name("london", Settings(conditions=("syndromes",))) == tree_name(
        "london", Settings(conditions=tuple(SYNDROMES)))  # fmt: skip
    assert Settings().conditions == tuple(DEFAULT)  # the first trees keep their names


def test_a_syndrome_tree_s_healthy_jitter_moves_every_measure_by_zero_on_average(london_sd):
    from scipy import stats

    from facediag.simulate.conditions import SYNDROMES, descriptors_of

    faces, sd = london_sd
    syndromes = list(SYNDROMES.values())
    geometric = [d for d in descriptors_of(syndromes) if d.kind == "geometric"]
    settings = Settings(strength=2.0, conditions=("syndromes",))
    changes: dict[str, list[float]] = {d.name: [] for d in geometric}
    for i, face in enumerate(faces[:40]):
        drawn = plan(face, HEALTHY, syndromes, sd, settings, np.random.default_rng([7, i]), (1350, 1350))
        for d in geometric:
            moved = d.sign * (d.measure(named_points(drawn.target)) - d.measure(named_points(face.points)))
            changes[d.name].append(moved / sd[d.name])
            assert np.isclose(changes[d.name][-1], drawn.amounts[d.name], atol=1e-3)  # solved jointly: exact
    for name, values in changes.items():
        assert stats.ttest_1samp(values, 0.0).pvalue > 0.01 and 0.2 < np.std(values) < 0.4, name


def test_a_syndrome_s_truth_mask_is_the_union_of_its_descriptors_regions(london_sd):
    from facediag.simulate.appearance import skin_weight
    from facediag.simulate.conditions import CONDITIONS as ALL
    from facediag.simulate.source import measure_table
    from facediag.simulate.tree import render

    faces = london_sd[0][:12]
    syndrome = ALL["thalassaemia_like"]
    table = measure_table(faces, [syndrome])
    settings = Settings(strength=2.0, conditions=(syndrome.name,), jitter=0.0, rotation=0.0, scale=0.0, shift=0.0)
    done = render(faces[0], syndrome.name, [syndrome], table, settings, np.random.default_rng(0))
    skin = skin_weight(done.image.shape, done.points) > 0.5
    assert done.mask[skin].all() and done.mask.sum() > skin.sum()  # the skin ellipse and the moved features
    named = named_points(done.points)
    for point in ("sn", "me"):  # nose base (midface) and chin (micrognathia) inside
        x, y = np.round(named[point]).astype(int)
        assert done.mask[y, x], point
    assert {f"change_sd_{d}" for d in syndrome.parts} <= set(done.row)
    assert all(np.isclose(done.row[f"change_sd_{d}"], 2.0, atol=1e-3) for d in ("midface", "micrognathia"))


def test_the_ideal_observer_is_at_chance_on_a_null_design_and_near_perfect_on_a_strong_one(london_dir):
    from facediag.evaluation.power import ideal_cv
    from facediag.simulate.measures import design_measures
    from facediag.simulate.source import london_faces, measure_table

    faces = london_faces(london_dir)  # 102 people, landmarks only: no photo is read or written
    conditions = ("hypertelorism", "upslant", "midface", "micrognathia")
    table = measure_table(faces, [CONDITIONS[c] for c in conditions])
    null = ideal_cv(design_measures(faces, Settings(strength=0.0, conditions=conditions), table))
    strong = ideal_cv(design_measures(faces, Settings(strength=3.0, conditions=conditions), table))
    assert null["n"] == strong["n"] == 102
    assert null["accuracy_lo"] < 0.2 < null["accuracy_hi"], null
    assert strong["accuracy_lo"] > 0.7, strong


def test_a_tree_s_truth_holds_each_descriptor_s_measure_as_its_design_predicts(strong_tree, london_dir):
    from facediag.evaluation.power import true_measures
    from facediag.simulate.measures import design_measures
    from facediag.simulate.source import london_faces

    table = pd.read_csv(strong_tree / "conditions.csv")
    settings = Settings(strength=3.0, people=15, seed=3, jitter=0.0, rotation=0.0, scale=0.0, shift=0.0)
    faces = london_faces(london_dir)
    design = design_measures(faces, settings, table, skin={f.subject: 0.0 for f in faces})  # skin: not compared
    written = true_measures(strong_tree)
    geometric = [f"measure_{c}" for c in DEFAULT if CONDITIONS[c].kind == "geometric"]
    assert list(written.columns) == [f"measure_{c}" for c in DEFAULT]
    assert len(design) == len(written) == 15
    assert np.allclose(written.loc[design["path"], geometric].to_numpy(), design[geometric].to_numpy(), atol=1e-4)
