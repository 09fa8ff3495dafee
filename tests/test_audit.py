"""`python -m facediag.audit` on a tree with planted problems lists every one of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from facediag.data.dsf import DSFDataset
from tests.conftest import run_python
from tests.owndata import add_broken_files, link, london_people, photos, resized_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def audited(london_dir, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("audit") / "photos"
    people = london_people(london_dir)
    planted: dict[str, Path] = {}
    rows = []
    for sex in ("female", "male"):
        for face_id in people.loc[people["face_gender"] == sex, "face_id"].iloc[:3]:
            for photo in photos(london_dir, face_id):
                path = link(photo, root / sex / f"{face_id}_{photo.parent.name}.jpg")
                rows.append({"path": f"{sex}/{path.name}", "subject": face_id, "sex": sex})
    original = sorted((root / "female").glob("*_neutral.jpg"))[0]
    planted["original"] = original
    planted["near"] = resized_copy(original.resolve(), root / "female" / "resized_copy.jpg")
    planted["exact"] = Path(shutil.copy(original.resolve(), root / "female" / "exact_copy.jpg"))
    male = sorted((root / "male").glob("*_smiling.jpg"))[0]
    planted["male"] = male
    planted["other_class"] = resized_copy(male.resolve(), root / "female" / "who_is_this.jpg", scale=0.8)
    planted |= add_broken_files(root / "male")
    pd.DataFrame(rows).to_csv(root.parent / "subjects.csv", index=False)
    out = tmp_path_factory.mktemp("audit_run")
    result = run_python(
        "-m", "facediag.audit", f"data.root={root}", f"data.subjects_csv={root.parent / 'subjects.csv'}",
        f"hydra.run.dir={out}", "preprocess.progress=false", "thumbnails=2", fresh=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, planted


def test_the_audit_lists_unreadable_files_with_their_reasons(audited):
    out, planted = audited
    table = pd.read_csv(out / "audit.csv", keep_default_na=False).set_index("path")
    assert len(table) == 12 + 3 + 3
    assert "broken link" in table.loc[str(planted["broken_link"]), "problems"]
    assert "not a recognised image" in table.loc[str(planted["text"]), "problems"]
    assert "decoded" in table.loc[str(planted["truncated"]), "problems"]


def test_the_audit_lists_exact_and_near_duplicates(audited):
    out, planted = audited
    table = pd.read_csv(out / "audit.csv", keep_default_na=False).set_index("path")
    assert str(planted["exact"]) in table.loc[str(planted["original"]), "identical_to"]
    assert str(planted["near"]) in table.loc[str(planted["original"]), "near_duplicate_of"]
    assert table.loc[str(planted["near"]), "problems"]
    clean = [p for p in table.index if p.endswith("_smiling.jpg") and "female" in p]
    assert all(table.loc[p, "problems"] == "" for p in clean)


def test_the_audit_flags_one_face_under_two_classes(audited):
    out, planted = audited
    table = pd.read_csv(out / "audit.csv", keep_default_na=False).set_index("path")
    assert table.loc[str(planted["other_class"]), "identity_across_classes"] in (True, "True")
    assert table.loc[str(planted["male"]), "identity_across_classes"] in (True, "True")
    html = (out / "audit.html").read_text()
    assert "one face under several classes" in html and planted["other_class"].name in html


def test_the_audit_page_is_self_contained_with_class_statistics_and_metadata(audited):
    out, _ = audited
    html = (out / "audit.html").read_text()
    assert "data:image/png;base64," in html and "<img src=\"http" not in html
    for section in ("Images per class", "How each class was photographed", "sex per class", "Aligned faces per class",
                    "Could the class be told from how the photo was saved?"):
        assert section in html
    table = pd.read_csv(out / "audit.csv", keep_default_na=False)
    readable = table[table["status"] == "ok"]
    assert (readable["file_kb"].astype(float) > 0).all() and set(readable["format"]) == {"JPEG"}
    assert (readable["grain"].astype(float) > -14).all() and (table[table["status"] != "ok"]["file_kb"] == "").all()
    assert "face masked: CNN" in html and "of each 224 px crop hidden" in html
    assert (out / "contact_sheet.png").stat().st_size > 10_000


def test_the_audit_lists_a_folder_matching_no_configured_class_instead_of_stopping(class_tree):
    from omegaconf import OmegaConf

    from facediag.audit.report import lenient_source
    from facediag.data.folder import UnknownClassError

    root = class_tree(["D1", "N0", "acne"], 1)
    data = OmegaConf.create({"source": {"_target_": "facediag.data.dsf.DSFDataset", "root": str(root)}})
    source = lenient_source(data)
    records = source.records()
    assert len(records) == 3 and any("acne" in note and "matches no class" in note for note in source.notes)
    assert [r.status for r in records if "acne" in r.path] == ["excluded"]
    with pytest.raises(UnknownClassError, match="acne"):
        DSFDataset(root).records()
