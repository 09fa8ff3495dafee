"""Audit a data folder before any training: `python -m facediag.audit data=folder data.root=<folder>`.

Writes ``audit.html`` (self-contained), ``audit.md`` and ``audit.csv`` (one row per file) into the run
dir: images per class; unreadable / no-face / several-face files with reasons; exact and near
duplicates; identity groups (those spanning classes flagged); image size, face size, blur (variance
of the Laplacian of the aligned 150 px chip) and head pose (yaw / pitch / roll proxies from the 68
landmarks) per class; capture cues (file size, format, JPEG quality, EXIF camera / software, background grain;
:mod:`facediag.audit.capture`) with how well each alone tells the classes; metadata balance per class (sex / age /
ethnicity columns of a subjects CSV); a contact sheet of aligned faces per class. Research tool, not a diagnosis.
"""

from __future__ import annotations

import inspect
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from facediag.audit.capture import CUES, capture_facts, cue_accuracies  # noqa: E402
from facediag.core.config import hydra_app  # noqa: E402
from facediag.core.crop import CropSpec  # noqa: E402
from facediag.core.status import OK, STATUSES  # noqa: E402

META_COLUMNS = ("sex", "age", "ethnicity", "gender", "race")
NO_CLASS = "(no class)"  # files of no class of the task: other folders, hidden files
MEASURES = ("width", "height", "face_px", "face_fraction", "blur", "yaw", "pitch", "roll")


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) proxies from 68 landmarks: nose offset from the eye midpoint / inter-ocular
    distance (yaw), nose height between eyes and mouth (pitch, ~0.5 frontal), eye-line angle in degrees (roll)."""
    left, right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    nose, mouth = landmarks[30], landmarks[48:68].mean(axis=0)
    eyes = (left + right) / 2
    ocular = float(np.linalg.norm(right - left)) or 1.0
    yaw = float((nose[0] - eyes[0]) / ocular)
    span = float(mouth[1] - eyes[1]) or 1.0
    pitch = float((nose[1] - eyes[1]) / span)
    roll = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    return yaw, pitch, roll


def blur(chip: np.ndarray) -> float:
    """Variance of the Laplacian of the grey chip (low = blurred)."""
    import cv2

    return float(cv2.Laplacian(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def measure(results: list[Any], chips: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-image face facts: faces found, face size, blur, head pose; NaN where there is no face."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"path": r.path, "face_status": r.status, "face_reason": r.reason, "n_faces": r.n_faces}
        if r.box is not None and r.landmarks is not None and r.image_size is not None:
            row["face_px"] = float(r.box[2] - r.box[0])
            row["face_fraction"] = row["face_px"] / float(r.image_size[0])
            row["yaw"], row["pitch"], row["roll"] = head_pose(r.landmarks)
        if r.path in chips:
            row["blur"] = blur(chips[r.path])
        rows.append(row)
    return pd.DataFrame(rows)


def problems_of(row: pd.Series) -> str:
    """Why a file needs a look: its status (unreadable, hidden, not an image, left out, no face), several faces,
    a duplicate, the same face under another class."""
    found = []
    if row["status"] != OK:
        found.append(f"{row['status']}: {row['reason']}" if row.get("reason") else str(row["status"]))
    if (row.get("n_faces") or 0) > 1:
        found.append(f"{int(row['n_faces'])} faces (largest used)")
    for column in ("identical_to", "near_duplicate_of"):
        if row.get(column):
            found.append(f"{column.replace('_', ' ')} {row[column]}")
    if row.get("identity_across_classes"):
        found.append("same face under another class")
    return "; ".join(found)


def face_blind_row(preprocessor: Any, usable: pd.DataFrame, people: pd.Series) -> pd.DataFrame:
    """The cue-table row of :func:`facediag.audit.capture.face_blind_accuracy` on the usable labelled photos
    with a face."""
    from facediag.audit.capture import face_blind_accuracy, face_blind_refusal
    faces = preprocessor.faces(usable.assign(person=people.to_numpy()), CropSpec(224, "vggface2", 0.2),
                               landmarks=True)
    with_face = [i for i, r in enumerate(faces.kept) if r.landmarks is not None]
    rows = faces.rows.iloc[with_face]
    row = {"cue": "face masked: CNN", "per class (median or commonest)": ""}
    refusal = face_blind_refusal(rows["label"], rows["person"])
    if refusal:
        return pd.DataFrame([{**row, "chance": np.nan, "accuracy": np.nan, "low": np.nan, "high": np.nan,
                              "shortcut": False, "note": refusal + " (photos with a face)"}])  # fmt: skip
    found = face_blind_accuracy(faces.crops[with_face], faces.landmarks[with_face], rows["label"], rows["person"])
    row["per class (median or commonest)"] = f"{found['hidden']:.0%} of each 224 px crop hidden"
    return pd.DataFrame([{**row, **{k: round(found[k], 3) for k in ("chance", "accuracy", "low", "high")},
                          "shortcut": found["shortcut"], "note": found["note"]}])  # fmt: skip


def contact_sheet(chips: dict[str, np.ndarray], table: pd.DataFrame, classes: list[str], out_png: Path, n: int) -> Path:
    """Up to ``n`` aligned faces per class (one row per class)."""
    from facediag.scoring.plots import image_grid, save_figure

    pictures: list[np.ndarray | None] = []
    captions: list[str] = []
    for label in classes:
        paths = [p for p in table.loc[table["label"] == label, "path"] if p in chips][:n]
        pictures += [chips[p] for p in paths] + [None] * (n - len(paths))
        captions += [Path(p).name[:14] for p in paths] + [""] * (n - len(paths))
    grid = image_grid(pictures, captions, n, row_labels=classes, cell=(1.3, 1.45), caption_size=6, dpi=100)
    return save_figure(grid, out_png)


def lenient_source(data_cfg: DictConfig) -> Any:
    """The data source, a folder matching no configured class listed (its files excluded), not refused."""
    from hydra.utils import get_class, instantiate

    target = get_class(data_cfg.source._target_)
    lenient = {"unknown": "exclude"} if "unknown" in inspect.signature(target).parameters else {}
    return instantiate(data_cfg.source, _convert_="all", **lenient)


def files_per_class(table: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Files per class (rows; "(no class)": files of no class of the task) and status (columns), with totals."""
    label = table["label"].where(table["label"].isin(classes), NO_CLASS)
    rows = classes + ([NO_CLASS] if (label == NO_CLASS).any() else [])
    counts = pd.crosstab(pd.Categorical(label, categories=rows), table["status"], dropna=False)
    counts = counts[[s for s in STATUSES if s in counts.columns]]
    counts["files"] = counts.sum(axis=1)
    counts["identities (several images)"] = [
        int((table[label == c]["identity_size"].fillna(0) > 1).sum()) for c in counts.index
    ]
    counts.index.name, counts.columns.name = "class", None
    return counts.reset_index()


def folder_problems(source: Any, table: pd.DataFrame, classes: list[str]) -> list[str]:
    """The source's notes on its folders (left out, holding no file) and every class without a usable image."""
    found = list(getattr(source, "notes", []))
    for c in classes:
        rows = table[table["label"] == c]
        if not (rows["status"] == OK).any():
            why = ", ".join(f"{n} {s}" for s, n in rows["status"].value_counts().items()) or "no file"
            found.append(f"class {c}: no usable image ({why})")
    return found


def audit(cfg: DictConfig) -> pd.DataFrame:
    """Run the audit of ``cfg.data`` into ``cfg.paths.output_dir``; return the per-file table (audit.csv).

    Every data problem is listed, none stops the audit: only a root that cannot be read does (a user error)."""
    from hydra.utils import instantiate

    from facediag.data.identity import IDENTITY_BACKBONE, face_descriptors, group_by_identity
    from facediag.data.records import build_manifest
    from facediag.evaluation.report import Report

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = lenient_source(cfg.data)
    manifest = build_manifest(source.records(), cache_dir=cfg.paths.cache_dir)
    classes = list(source.classes)
    readable = manifest[manifest["status"] == OK].reset_index(drop=True)
    preprocessor = instantiate(cfg.preprocess).unharmonised()  # the photos as captured, not as a model sees them
    table, chips, identity = manifest, {}, None
    if not readable.empty:
        found = face_descriptors(readable, preprocessor, cfg.preprocess, cfg.paths.cache_dir)
        faces = preprocessor.faces(readable, CropSpec.of(IDENTITY_BACKBONE["align"]))
        results = list(faces.results)
        chips = dict(zip(faces.paths, faces.crops, strict=True))
        identity = group_by_identity(readable, found)
        table = manifest.merge(measure(results, chips), on="path", how="left")
        faceless = table["face_status"].notna() & (table["face_status"] != OK)  # the status manifest.csv gets
        table.loc[faceless, ["status", "reason"]] = table.loc[faceless, ["face_status", "face_reason"]].to_numpy()
        table = table.merge(identity.groups[["path", "identity"]], on="path", how="left")
    table = table.reindex(columns=[*table.columns, *(c for c in ("identity", *MEASURES) if c not in table.columns)])
    sizes = table[table["identity"].fillna(-1) >= 0]["identity"].value_counts()
    table["identity_size"] = table["identity"].map(sizes).astype("Int64")
    cross = {p for frame in (identity.cross_class if identity else []) for p in frame["path"]}
    table["identity_across_classes"] = table["path"].isin(cross)
    same_bytes = manifest.dropna(subset=["sha256"]).groupby("sha256")["path"].agg(list)
    twins = {p: [q for q in paths if q != p] for paths in same_bytes for p in paths if len(paths) > 1}
    table["identical_to"] = table["path"].map(lambda p: ", ".join(twins.get(p, [])))
    near: dict[str, list[str]] = {}
    for a, b, _ in identity.near_duplicates if identity else []:
        near.setdefault(a, []).append(b)
        near.setdefault(b, []).append(a)
    table["near_duplicate_of"] = table["path"].map(lambda p: ", ".join(near.get(p, [])))
    table["problems"] = table.apply(problems_of, axis=1) if len(table) else pd.Series(dtype=str)
    facts = pd.DataFrame([{"path": path, **capture_facts(path)} for path in readable["path"]], columns=["path", *CUES])
    table = table.merge(facts, on="path", how="left")
    table.to_csv(out_dir / "audit.csv", index=False)

    report = Report(f"Data audit of {getattr(source, 'root', cfg.data.name)}")
    report.text(
        "Run this before training. A class photographed differently (size, blur, pose, face size) is a shortcut "
        "a CNN will learn; the same person or photo on two sides of a split inflates accuracy."
    )
    report.heading("Images per class")
    report.table(files_per_class(table, classes), caption=f"{len(manifest)} files found, by status "
                 "(ok: usable; the others are listed below and in audit.csv)")  # fmt: skip
    folders = folder_problems(source, table, classes)
    report.heading("Folders and classes needing a look")
    report.text(f"{len(folders)} problem(s) with the folders or classes." + (
        " A class without a usable image stops training: add images, or leave it out with data.exclude=[<folder>] "
        "or data.classes=[<the others>]." if folders else ""))  # fmt: skip
    if folders:
        report.table(pd.DataFrame({"problem": folders}), caption="folders left out or empty; classes without a usable "
                     "image")  # fmt: skip
    bad = table[table["problems"] != ""][["path", "label", "problems"]]
    report.heading("Files needing a look")
    report.text(
        f"{len(bad)} file(s): unreadable (broken links, empty, truncated or undecodable files), hidden, not images, "
        "left out, without a face, with several faces, duplicated, or the same face under two classes. "
        + (f"Identity groups: {identity.multi_image_identities} faces with several images; "
           f"{len(identity.cross_class)} span classes." if identity else "No readable image: no face was looked for.")
    )  # fmt: skip
    if not bad.empty:
        report.table(bad.fillna(""), caption="every file with a problem (audit.csv has all files)")
    for frame in identity.cross_class if identity else []:
        report.table(frame, caption="WARNING: one face under several classes (check the labels)")
    labelled = table[table["label"].isin(classes)]
    flagged = add_photo_sections(report, cfg, preprocessor, labelled, chips, classes, out_dir)
    report.write(out_dir, stem="audit")
    print(f"audit of {len(manifest)} files: {len(bad)} need a look; {len(folders)} folder or class problem(s); "
          f"near-duplicates {len(near) // 2 if near else 0}; identities across classes "
          f"{len(identity.cross_class) if identity else 0}")  # fmt: skip
    for problem in folders:
        print(f"  {problem}")
    if not flagged.empty:
        found = [f"{c.cue} {c.accuracy:.3f} [{c.low:.3f}-{c.high:.3f}] vs chance {c.chance:.3f}"
                 for c in flagged.itertuples()]
        print("WARNING: the class can be told without the faces (how the photos were saved, or a CNN with the "
              "face hidden): " + ", ".join(found))
    print(f"wrote {out_dir / 'audit.html'}, {out_dir / 'audit.md'} and {out_dir / 'audit.csv'}")
    return table


def add_photo_sections(
    report: Any, cfg: DictConfig, preprocessor: Any, labelled: pd.DataFrame, chips: dict[str, np.ndarray],
    classes: list[str], out_dir: Path,
) -> pd.DataFrame:
    """How each class was photographed, the capture cues, metadata balance and the contact sheet; returns the
    cues flagged as shortcuts (none when fewer than two classes have a usable photo)."""
    from facediag.evaluation.report import fmt_number

    report.heading("How each class was photographed")
    numeric = labelled[list(MEASURES)].apply(pd.to_numeric, errors="coerce").assign(label=labelled["label"])
    stats = numeric.groupby("label")[list(MEASURES)].agg(["median", "std"])
    stats.columns = [f"{m} {s}" for m, s in stats.columns]
    report.table(
        stats.map(fmt_number).reset_index().rename(columns={"label": "class"}),
        caption="median and spread (std) per class: image size (px), face width (px, fraction of the image), "
        "blur (variance of Laplacian of the 150 px chip; low = blurred), head pose (yaw, pitch ~0.5 frontal, roll °)",
    )
    report.heading("Could the class be told from how the photo was saved?")
    usable = labelled[labelled["status"] == OK]
    flagged = pd.DataFrame(columns=["cue", "accuracy", "low", "high", "chance", "per class (median or commonest)"])
    if usable["label"].nunique() < 2:
        report.text("Not checked: it needs usable photos of at least two classes "
                    f"({usable['label'].nunique()} class(es) have one).")  # fmt: skip
    else:
        people = usable["identity"].where(usable["identity"].fillna(-1) >= 0).astype("string").fillna(usable["subject"])
        cues = cue_accuracies(usable, usable["label"], people)
        if cfg.face_blind_check:
            cues = pd.concat([cues, face_blind_row(preprocessor, usable, people)], ignore_index=True)
        report.text(
            "Each cue alone, in a person-grouped 5-fold CV (logistic regression): file size (kB), pixel count, format, "
            "JPEG quality (from the quantisation table), EXIF camera and software, and the grain of the background "
            "(log variance of the Laplacian in the four corners). An accuracy whose 95% interval lies above chance "
            "means the classes were photographed or saved differently: a model can score on that without looking at "
            "a face. Last row: ImageNet CNN features (EfficientNet-Lite0) of the crops with the face hidden (one fixed "
            "region, the union of every photo's landmark hull), linear SVM: what a model can learn without the face. "
            "Re-encode or re-photograph, or compare any score with this face-blind one."
        )
        flagged = cues[cues["shortcut"]]
        for _, cue in flagged.iterrows():
            what = (f"{cue['cue']} alone" if cue["cue"] in CUES else
                    "a CNN with the face hidden (hair, clothing, background or the photos' grain)")  # fmt: skip
            report.text(f"WARNING: the class can be told from {what}: accuracy {cue['accuracy']:.3f} "
                        f"[{cue['low']:.3f}-{cue['high']:.3f}] vs chance {cue['chance']:.3f} "
                        f"({cue['per class (median or commonest)']}).")  # fmt: skip
        shown = cues.drop(columns="shortcut").astype(object)
        report.table(shown.where(shown.notna(), ""), caption="capture cues per class; accuracy of the class from each "
                     "cue alone [95% person-bootstrap interval]")  # fmt: skip
    meta = [c for c in META_COLUMNS if c in labelled.columns and labelled[c].notna().any()]
    if meta:
        report.heading("Metadata balance per class")
        for column in meta:
            values = labelled[column]
            if column == "age":
                values = pd.cut(pd.to_numeric(values, errors="coerce"), [0, 20, 30, 40, 50, 60, 200])
            report.table(pd.crosstab(labelled["label"], values).reset_index(), caption=f"{column} per class")
    report.heading("Aligned faces per class")
    if chips:
        sheet = contact_sheet(chips, labelled, classes, out_dir / "contact_sheet.png", int(cfg.thumbnails))
        report.figure(sheet, caption="aligned 150 px chips (the first ones of each class)")
    else:
        report.text("No aligned face: no readable photo with a face.")
    return flagged


main = hydra_app("audit", audit)


if __name__ == "__main__":
    main()
