from pathlib import Path

import pandas as pd
import pytest

from facediag.core.download import sha256_file
from facediag.data import build_manifest, usable
from facediag.data.dsf import DSFDataset
from facediag.data.folder import FolderDataset, UnknownClassError
from facediag.data.london import LondonFaces, pinned_checksums

DSF_FOLDERS = ["Beta-Thalassemia", "hyperthyroidism", "Down Syndrome", "LEPROSY", "healthy"]


def test_dsf_folder_names_map_to_classes_tolerant_of_case_spaces_and_hyphens(class_tree):
    root = class_tree(DSF_FOLDERS, 3)
    records = DSFDataset(root, task="multiclass").records()
    assert sorted({r.label for r in records}) == ["D1", "D2", "D3", "D4", "N0"]
    assert len(records) == 15


def test_dsf_binary_task_keeps_d1_and_n0_and_lists_the_rest_as_excluded(class_tree):
    root = class_tree(DSF_FOLDERS, 3)
    dataset = DSFDataset(root, task="binary")
    manifest = build_manifest(dataset.records())
    kept = usable(manifest)
    assert dataset.classes == ["N0", "D1"] and dataset.positive == "D1"
    assert sorted(kept["label"].unique()) == ["D1", "N0"] and len(kept) == 6
    assert (manifest["status"].str.startswith("excluded")).sum() == 9


def test_dsf_subject_defaults_to_the_file_and_can_come_from_a_csv(class_tree, tmp_path):
    root = class_tree(["D1", "N0"], 2)
    default = DSFDataset(root).records()
    assert len({r.subject for r in default}) == 4
    csv = tmp_path / "subjects.csv"
    csv.write_text("path,subject,site\nD1/img000.png,p1,lisbon\nD1/img001.png,p1,lisbon\n")
    records = {Path(r.path).name + r.label: r for r in DSFDataset(root, subjects_csv=csv).records()}
    assert records["img000.pngD1"].subject == records["img001.pngD1"].subject == "p1"
    assert records["img000.pngD1"].meta["site"] == "lisbon"


def test_unknown_class_folder_is_a_clear_error(class_tree):
    root = class_tree(["D1", "N0", "acne"], 1)
    with pytest.raises(UnknownClassError, match="acne"):
        DSFDataset(root).records()


def test_folder_dataset_uses_every_folder_as_a_class(class_tree):
    root = class_tree(["cats", "dogs"], 2)
    dataset = FolderDataset(root)
    assert dataset.classes == ["cats", "dogs"]
    assert len(dataset.records()) == 4


def test_undecodable_and_empty_files_are_reported_in_the_manifest(class_tree):
    root = class_tree(["a", "b"], 2)
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "b" / "empty.png").write_bytes(b"")
    manifest = build_manifest(FolderDataset(root).records()).set_index("path")
    assert manifest.loc[str(root / "a" / "broken.jpg"), "status"] == "error"
    assert (
        "cannot be decoded" in manifest.loc[str(root / "a" / "broken.jpg"), "reason"]
        or "not a recognised" in manifest.loc[str(root / "a" / "broken.jpg"), "reason"]
    )
    assert "empty file" in manifest.loc[str(root / "b" / "empty.png"), "reason"]
    assert len(manifest) == 6 and len(usable(manifest.reset_index())) == 4


def test_an_empty_class_folder_is_a_note_not_an_error(class_tree):
    root = class_tree(["a", "b"], 2)
    (root / "empty").mkdir()
    dataset = FolderDataset(root)
    assert len(dataset.records()) == 4 and dataset.classes == ["a", "b", "empty"]
    assert any("empty" in note and "holds no file" in note for note in dataset.notes)


def test_a_list_of_classes_or_an_exclude_leaves_the_other_folders_out_with_every_file_listed(class_tree):
    root = class_tree(["a", "b", "c"], 2)
    (root / "empty").mkdir()
    for dataset in (FolderDataset(root, classes=["a", "b"]), FolderDataset(root, exclude=["c", "empty"])):
        manifest = build_manifest(dataset.records()).set_index("path")
        assert dataset.classes == ["a", "b"] and len(manifest) == 6
        left_out = manifest.loc[str(root / "c" / "img000.png")]
        assert left_out["status"] == "excluded" and "folder" in left_out["reason"] and pd.isna(left_out["label"])
        assert any(str(root / "c") in note and "left out" in note for note in dataset.notes)
    with pytest.raises(UnknownClassError, match="'c'"):
        FolderDataset(root, classes={"a": [], "b": []}).records()
    assert FolderDataset(root, classes={"a": [], "b": []}, exclude=["c", "empty"]).classes == ["a", "b"]


def test_hidden_files_broken_links_and_other_extensions_are_manifest_rows_with_status_and_reason(class_tree):
    root = class_tree(["a", "b"], 2)
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "a" / "gone.jpg").symlink_to(root / "a" / "missing.jpg")
    (root / "b" / "notes.txt").write_text("not a photo")
    manifest = build_manifest(FolderDataset(root).records()).set_index("path")
    rows = {Path(p).name: (r["status"], r["reason"]) for p, r in manifest.iterrows()}
    assert rows[".DS_Store"] == ("excluded", "hidden file")
    assert rows["gone.jpg"][0] == "error" and "broken link" in rows["gone.jpg"][1]
    assert rows["notes.txt"] == ("not_image", "not an image file (by its extension)")
    assert len(manifest) == 7 and len(usable(manifest.reset_index())) == 4


@pytest.mark.slow
def test_london_manifest_has_204_images_of_102_people_with_matching_checksums(london_dir):
    manifest = build_manifest(LondonFaces(london_dir, task="sex", download=False).records())
    assert len(manifest) == 204 and manifest["subject"].nunique() == 102
    assert (manifest["status"] == "ok").all()
    assert set(manifest["label"]) == {"female", "male"}
    sums = pinned_checksums()
    for _, row in manifest.iterrows():
        relative = Path(row["path"]).relative_to(london_dir).as_posix()
        assert row["sha256"] == sums[relative], relative
    assert sha256_file(london_dir / "london_info.csv") == sums["london_info.csv"]


def test_london_age_task_reports_people_with_unknown_age(london_dir):
    records = LondonFaces(london_dir, task="age", download=False).records()
    unknown = [r for r in records if r.label is None]
    assert len(unknown) == 4 and all("excluded" in r.status for r in unknown)
    assert {r.label for r in records if r.label} <= set(LondonFaces(london_dir, task="age").classes)


def test_london_tasks_have_the_documented_classes(london_dir):
    assert LondonFaces(london_dir, task="expression").positive == "smiling"
    labels = {r.label for r in LondonFaces(london_dir, task="sex_expression").records()}
    assert labels == {"female_neutral", "female_smiling", "male_neutral", "male_smiling"}


def test_predict_lists_a_folders_files_with_the_statuses_the_manifest_gives(class_tree):
    from facediag.apply.predict import expand

    root = class_tree(["a", "b"], 2)
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "a" / "gone.jpg").symlink_to(root / "a" / "missing.jpg")
    (root / "b" / "notes.txt").write_text("not a photo")
    images, others = expand([str(root)])
    manifest = build_manifest(FolderDataset(root).records()).set_index("path")
    assert sorted(images + [path for path, *_ in others]) == sorted(manifest.index)
    assert {path: (status, reason) for path, status, reason in others} == {
        path: (row["status"], row["reason"]) for path, row in manifest.iterrows() if row["status"] != "ok"
    }


def test_the_split_table_counts_every_file_once_used_per_role_and_left_out_per_status(class_tree):
    from facediag.data.build import count_table, with_face_status

    root = class_tree(["a", "b", "c"], 3)
    (root / "a" / "gone.jpg").symlink_to(root / "a" / "missing.jpg")
    manifest = build_manifest(FolderDataset(root, classes=["a", "b"]).records())
    split = usable(manifest).assign(role=["train", "train", "test"] * 2)
    faceless = str(root / "b" / "img002.png")
    manifest = with_face_status(manifest, pd.DataFrame({"path": [faceless], "status": ["no_face"], "reason": ["x"]}))
    table = count_table(manifest, split, ["a", "b"])
    assert table.loc["total", "total"] == len(manifest) == 10
    assert table.loc["b", ["train", "test", "no_face"]].tolist() == [2, 0, 1]
    assert table.loc["a", ["train", "test", "error"]].tolist() == [2, 1, 1]
    assert table.loc["(no class)", "excluded"] == 3
