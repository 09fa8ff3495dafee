"""Pseudo-subjects from face identity, near-duplicates and overlaps (descriptors given: no CNN needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facediag.data.identity import (
    IDENTICAL,
    NEAR_DUPLICATE,
    SAME_IDENTITY,
    Descriptors,
    group_by_identity,
    identity_clusters,
    overlap_pairs,
)
from facediag.data.splits import LeakError, check_no_leak, make_split


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def descriptors(vectors: list[np.ndarray | None], paths: list[str]) -> Descriptors:
    """Descriptors with given vectors (None: no face), equal chip hashes and distinct sha256s."""
    array = np.array([np.full(128, np.nan) if v is None else v for v in vectors], dtype=np.float32)
    hashes = np.zeros((len(vectors), 256), dtype=bool)
    status = ["no_face" if v is None else "ok" for v in vectors]
    return Descriptors(paths, [f"sha-{p}" for p in paths], array, status, hashes)


@pytest.fixture
def faces() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    a, b, c = (unit(rng.normal(size=128)) for _ in range(3))
    near_a = a + 0.3 * unit(rng.normal(size=128))  # same person, other photo: distance 0.3
    return {"a": a, "a2": near_a, "b": b, "c": c}


def test_unnamed_photos_of_one_face_share_a_subject_and_the_csv_wins(faces):
    table = pd.DataFrame(
        {
            "path": ["p0", "p1", "p2", "p3", "p4", "p5"],
            "label": ["x", "x", "y", "y", "y", "x"],
            "subject": ["f0", "f1", "bob", "f3", "f4", "f5"],
            "subject_source": ["file", "file", "csv", "file", "file", "file"],
        }
    )
    found = descriptors([faces["a"], faces["a2"], faces["b"], faces["b"] + 0.01, faces["c"], None], list(table.path))
    report = group_by_identity(table, found)
    groups = report.groups.set_index("path")
    assert groups.loc["p0", "subject"] == groups.loc["p1", "subject"]
    assert groups.loc["p0", "subject_source"] == "identity"
    assert groups.loc["p3", "subject"] == "bob" and groups.loc["p2", "subject_source"] == "csv"
    assert groups.loc["p4", "subject_source"] == "file" and groups.loc["p5", "subject_source"] == "file"
    assert groups.loc["p5", "identity"] == -1
    assert report.multi_image_identities == 2 and report.cross_class == []


def test_one_face_under_two_classes_is_listed(faces):
    table = pd.DataFrame({"path": ["p0", "p1"], "label": ["x", "y"], "subject": ["f0", "f1"], "subject_source": "file"})
    report = group_by_identity(table, descriptors([faces["a"], faces["a2"]], ["p0", "p1"]))
    assert len(report.cross_class) == 1 and "several classes" in report.summary()


def test_one_person_the_subjects_csv_names_under_two_classes_is_a_state_label_not_a_warning(faces):
    """Neutral and smiling photos of one named person (expression is a state label); two names still warn."""
    found = descriptors([faces["a"], faces["a2"]], ["p0", "p1"])
    named = pd.DataFrame({"path": ["p0", "p1"], "label": ["x", "y"], "subject": "ann", "subject_source": "csv"})
    assert group_by_identity(named, found).cross_class == []
    two_names = named.assign(subject=["ann", "eve"])
    assert len(group_by_identity(two_names, found).cross_class) == 1


def test_complete_linkage_does_not_chain():
    # five points 0.3 apart in a row: single linkage at 0.5 chains them all, complete linkage does not
    base, step = unit(np.eye(128)[0]), unit(np.eye(128)[1]) * 0.3
    chain = np.array([base + k * step for k in range(5)])
    assert len(set(identity_clusters(chain, 0.5, "single"))) == 1
    assert np.bincount(identity_clusters(chain, 0.5, "complete")).max() <= 2


def test_overlaps_are_identical_near_duplicate_or_same_identity(faces):
    ref = descriptors([faces["a"], faces["b"], faces["c"]], ["r0", "r1", "r2"])
    qry = descriptors([faces["a"] + 0.005, faces["b"] + 0.005, faces["a2"], faces["c"]], ["q0", "q1", "q2", "q3"])
    qry.chip_hashes[1, :100] = True  # same face, but a different chip: not a copy of that photo
    qry.sha256[3] = ref.sha256[2]
    kinds = {(ref.paths[i], qry.paths[j]): kind for i, j, kind, _, _ in overlap_pairs(ref, qry)}
    assert kinds == {
        ("r0", "q0"): NEAR_DUPLICATE,
        ("r1", "q1"): SAME_IDENTITY,
        ("r0", "q2"): SAME_IDENTITY,
        ("r2", "q3"): IDENTICAL,
    }


def test_a_near_duplicate_on_two_sides_or_under_two_labels_is_refused():
    table = pd.DataFrame(
        {"path": ["a", "b", "c"], "label": ["x", "x", "y"], "subject": ["1", "2", "3"], "sha256": ["s1", "s2", "s3"]}
    )
    check_no_leak(table.assign(role=["train", "test", "test"]))
    with pytest.raises(LeakError, match="near-duplicate.*several sides: a \\(train\\), b \\(test\\)"):
        check_no_leak(table.assign(role=["train", "test", "test"]), near_duplicates=[("a", "b", 0.05)])
    with pytest.raises(LeakError, match="several labels: b \\(x\\), c \\(y\\)"):
        check_no_leak(table.assign(role=["test", "test", "test"]), near_duplicates=[("b", "c", 0.05)])


def test_the_paper_split_never_exceeds_its_targets_with_people_of_several_photos():
    rng = np.random.default_rng(1)
    subjects = np.repeat([f"s{i}" for i in range(40)], rng.integers(1, 4, size=40))
    table = pd.DataFrame(
        {"path": [f"p{i}" for i in range(len(subjects))], "label": "x", "subject": subjects, "sha256": None}
    )
    table["sha256"] = table["path"]
    split = make_split(table, kind="paper", n_train=20, n_test=15, val_size=0.2)
    counts = split["role"].value_counts()
    assert counts["test"] <= 15 and counts["train"] + counts["val"] <= 20
    assert split.groupby("subject")["role"].nunique().max() == 1


def test_find_overlaps_between_a_training_set_and_new_photos(london_dir, tmp_path):
    """The interface external validation uses: identical bytes, a resized copy and the same person's other photo."""
    import shutil

    from hydra.utils import instantiate

    from facediag.core.download import sha256_file
    from facediag.data.identity import find_overlaps
    from tests.conftest import compose_train
    from tests.owndata import photos, resized_copy

    cfg = compose_train(tmp_path / "run", "preprocess.progress=false", "preprocess.n_workers=1")
    first, second, third = (photos(london_dir, face_id) for face_id in ("001", "002", "003"))
    # 005 and 067 are two different people 0.479 apart: within the within-set 0.5, beyond the cross-set 0.45
    lookalike, other = photos(london_dir, "005")[0], photos(london_dir, "067")[0]
    reference = [(str(p), sha256_file(p)) for p in (first[0], second[0], third[0], lookalike)]
    query_paths = [
        Path(shutil.copy(first[0], tmp_path / "same_bytes.jpg")),
        resized_copy(second[0], tmp_path / "resized.jpg"),
        third[1],  # the same person smiling
        photos(london_dir, "004")[0],  # someone else
        other,  # someone else, close to the lookalike
    ]
    query = [(str(p), "") for p in query_paths]
    found = find_overlaps(reference, query, instantiate(cfg.preprocess), cfg.preprocess, cfg.paths.cache_dir)
    kinds = {(Path(row.reference).name, Path(row.query).name): row.kind for row in found.itertuples()}
    assert kinds == {
        (first[0].name, "same_bytes.jpg"): "identical",
        (second[0].name, "resized.jpg"): "near_duplicate",
        (third[0].name, third[1].name): "same_identity",
    }
    assert found["distance"].max() < 0.45
    loose = find_overlaps(
        reference, query, instantiate(cfg.preprocess), cfg.preprocess, cfg.paths.cache_dir, identity_threshold=0.5
    )
    assert (lookalike.name, other.name) in {(Path(r.reference).name, Path(r.query).name) for r in loose.itertuples()}
