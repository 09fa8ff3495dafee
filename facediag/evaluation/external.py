"""External validation: apply a trained run to another labelled folder with the run's preprocessing and classes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from facediag.apply.trained_run import TrainedRun
from facediag.data.build import with_face_status
from facediag.data.records import OK, build_manifest, usable
from facediag.evaluation.single import evaluate_run
from facediag.evaluation.transfer import Transfer
from facediag.preprocess.pipeline import results_frame
from facediag.scoring.controls import CONTROLS, CONTROLS_DIR, compare, controls_table
from facediag.scoring.results import prediction_frame

log = logging.getLogger(__name__)


def run_class_aliases(run: TrainedRun) -> dict[str, list[str]]:
    """The run's classes with the aliases its data config knew (DSF: 'beta-thalassemia' → D1, ...)."""
    known = run.cfg.data.get("classes")
    aliases = OmegaConf.to_container(known) if isinstance(known, DictConfig) else {}
    return {c: list(aliases.get(c) or []) for c in run.classes}


def training_overlaps(run: TrainedRun, external: pd.DataFrame) -> list[str]:
    """Warnings, one per external image, for images the run trained or validated on (its strongest overlap).

    Byte-identical files (sha256 of the external manifest vs the run's split.csv, roles train and val);
    where the training images are on this machine also near-duplicates (re-encoded, resized, lightly
    cropped copies) and the same person (dlib identity descriptors), through facediag.data.identity.
    """
    if not (run.run_dir / "split.csv").is_file() or "sha256" not in external:
        return [f"{run.run_dir}: no split.csv with sha256; overlap with the training images was not checked"]
    seen = run.training_rows().drop_duplicates("sha256")
    role = dict(zip(seen["path"], seen["role"], strict=True))
    present = seen[[Path(p).is_file() for p in seen["path"]]]
    query = usable(external)
    warnings: list[str] = []
    if len(present) < len(seen):
        warnings.append(
            f"{len(seen) - len(present)} of {len(seen)} training/validation images of the run are not on this "
            "machine: only their bytes (sha256) were compared, not near-duplicates or identities"
        )
        absent = seen[~seen["path"].isin(present["path"])].set_index("sha256")
        for row in query[query["sha256"].isin(absent.index)].itertuples():
            warnings.append(_overlap_warning("identical", row.path, absent.at[row.sha256, "path"], role))
    if len(present) and len(query):
        from facediag.data.identity import CROSS_SET_IDENTITY_THRESHOLD, IDENTITY_THRESHOLD, find_overlaps

        pairs = find_overlaps(
            list(zip(present["path"], present["sha256"], strict=True)),
            list(zip(query["path"], query["sha256"], strict=True)),
            run.preprocessor(),
            run.cfg.preprocess,
            run.cfg.paths.cache_dir,
            identity_threshold=IDENTITY_THRESHOLD,
        )
        near_miss = (pairs["kind"] == "same_identity") & (pairs["distance"] > CROSS_SET_IDENTITY_THRESHOLD)
        if near_miss.any():
            missed = pairs.loc[near_miss, "query"].nunique()
            warnings.append(
                f"{missed} external image(s) are {CROSS_SET_IDENTITY_THRESHOLD}-{IDENTITY_THRESHOLD} (descriptor "
                "distance) from a training/validation face: photos of different people come that close (8% of "
                "photos against 80 London people, 46% of JAFFE's against London, benchmarks/identity.py), so they "
                "are not called the same person"
            )
        pairs = pairs[~near_miss]
        strongest = pairs.assign(rank=pairs["kind"].map(OVERLAP_RANK)).sort_values(["rank", "distance"])
        for p in strongest.drop_duplicates("query").itertuples():
            warnings.append(_overlap_warning(p.kind, p.query, p.reference, role, p.distance))
    return warnings


OVERLAP_RANK = {"identical": 0, "near_duplicate": 1, "same_identity": 2}
OVERLAP_WORDS = {
    "identical": "is byte-identical to",
    "near_duplicate": "is a near-duplicate (re-encoded, resized or cropped copy) of",
    "same_identity": "shows the same person as",
}


def _overlap_warning(kind: str, path: str, reference: str, role: dict[str, str], distance: float | None = None) -> str:
    where = f" (descriptor distance {distance:.3f})" if distance is not None and distance == distance else ""
    return (
        f"{path} {OVERLAP_WORDS[kind]} {reference}, a {role.get(reference, 'training')} image of the run{where}: "
        "external validation on it is not independent"
    )


def refusals(manifest: pd.DataFrame, results: list[Any]) -> list[str]:
    """`path: why` for every external file that was not scored (unreadable, unlabelled, no face)."""
    lines = [
        f"{row.path}: {f'{row.status} ({row.reason})' if row.status != OK else 'no class label'}"
        for row in manifest.itertuples()
        if row.status != OK or pd.isna(row.label)
    ]
    listed = set(manifest.loc[manifest["status"] != OK, "path"])
    return lines + [f"{r.path}: {r.status} ({r.reason})" for r in results if not r.has_crop and r.path not in listed]


def site_controls(run: TrainedRun, site: pd.DataFrame, predictions: pd.DataFrame, out_dir: Path
                  ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The controls the run kept (``controls/<name>/``: the models trained on its own split) scored on the ``site``
    photos and set against the method's external ``predictions`` as on the run's test split
    (:func:`facediag.scoring.controls.compare`); their predictions go to ``out_dir/controls/<name>/``. Returns
    ({control: {variant: comparison}}, a line for each control not scored, saying why)."""
    from facediag.apply.control_views import SiteControl

    found: dict[str, dict[str, Any]] = {}
    not_scored: list[str] = []
    split_csv = run.run_dir / "split.csv"
    split = pd.read_csv(split_csv, dtype=str) if split_csv.is_file() else pd.DataFrame(columns=["path", "role"])
    training = split[split["role"].isin(["train", "val"])]
    absent = sum(not Path(p).is_file() for p in training["path"])
    for name in CONTROLS:
        folder = run.run_dir / CONTROLS_DIR / name
        if not (folder / "predictions.csv").is_file():
            not_scored.append(f"{name}: the run kept no {name} control ({folder} has no predictions.csv)")
            continue
        if run.summary.get("checkpoint") or run.summary.get("best_checkpoint"):
            not_scored.append(f"{name}: the run records the checkpoint its own test used, not the one its {name} "
                              f"control tested ({folder / 'checkpoints'}), so that control cannot be rebuilt here")
            continue
        if name == "face_blind" and (absent or training.empty):
            not_scored.append(f"{name}: the face region it hides comes from the run's training and validation photos "
                              f"({split_csv}), and {absent or 'all'} of them are not on this machine")
            continue
        control = SiteControl(name, run.preprocessor(), site, training)
        frames = []
        for variant in run.variants:
            model = type(run.predictor).load(folder, variant, run.batch_size, run.cfg, run.summary)
            scored = model.score(control.view(), list(control.rows["path"]))
            position = {path: i for i, path in enumerate(control.rows["path"])}
            kept = control.rows.iloc[[position[p] for p in scored.paths]]
            frames.append(prediction_frame(kept, scored.scores, run.classes, variant))
        scores = pd.concat(frames, ignore_index=True)
        (out_dir / CONTROLS_DIR / name).mkdir(parents=True, exist_ok=True)
        scores.to_csv(out_dir / CONTROLS_DIR / name / "external_predictions.csv", index=False)
        found[name] = compare(predictions, scores, run.classes, run.positive)
    return found, not_scored


def site_controls_table(run: TrainedRun, found: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """:func:`facediag.scoring.controls.controls_table` of the controls on this site, each control's accuracy on the
    run's own test split beside it."""
    own = run.summary.get("controls") or {}
    table = controls_table(found)
    internal = [((own.get(c) or {}).get(v) or {}).get("accuracy")
                for c, v in zip(table["control"], table["variant"], strict=True)]
    table.insert(2, "run's test split", [f"{a:.3f}" if a is not None else "n/a" for a in internal])
    return table.rename(columns={"accuracy [95% CI]": "this site [95% CI]"})


def external_validation(
    run_dir: str | Path, data_cfg: DictConfig, out_dir: str | Path, recalibrate: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Score every image of ``data_cfg``'s folder with the run's model; report the same metrics.

    Class folders are matched to the run's classes (tolerant of case, spaces, hyphens and the run's
    aliases); an unknown class name is an error naming the folder. Images without a face are listed
    in the external preprocess_report.csv, not silently dropped; when none is usable the error lists
    every file and why. Images the run trained or validated on are warned about (``training_overlaps``,
    also in the summary). The controls the run kept are scored on the same photos (:func:`site_controls`;
    ``external_controls`` in the summary and metrics.json, beside the method's accuracy in the report). A DSIFT run
    is scored with each of its variants. The report sets the run's own test metrics beside these, flags a threshold
    shift, draws the misclassified photos and, with ``recalibrate`` (people per class of this site), re-thresholds on
    them and scores the others apart (:mod:`facediag.evaluation.transfer`).
    """
    run = TrainedRun(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_cfg = OmegaConf.merge(data_cfg.source, {"classes": run_class_aliases(run), "positive": run.positive})
    source = instantiate(source_cfg, _convert_="all")
    manifest = build_manifest(source.records())
    manifest.to_csv(out_dir / "external_manifest.csv", index=False)
    overlaps = training_overlaps(run, manifest)
    for warning in overlaps:
        log.warning("%s", warning)
    rows = usable(manifest).assign(role="test")
    scored = run.score(list(rows["path"]))
    report = results_frame(scored.results)
    report.to_csv(out_dir / "external_preprocess_report.csv", index=False)
    manifest = with_face_status(manifest, report)  # each file's status as the report gives it (no_face, ...)
    manifest.to_csv(out_dir / "external_manifest.csv", index=False)
    if not scored.paths:
        raise ValueError(
            f"external validation: no usable image in {data_cfg.get('root')} ({len(manifest)} files):\n  "
            + "\n  ".join(refusals(manifest, scored.results))
        )
    position = {path: i for i, path in enumerate(rows["path"])}
    kept = rows.iloc[[position[p] for p in scored.paths]]
    frames = [prediction_frame(kept, scored.scores, run.classes, run.variant)]
    for variant in run.variants:
        if variant != run.variant:
            scores, _ = TrainedRun(run_dir, variant=variant).score_crops(scored.crops)
            frames.append(prediction_frame(kept, scores, run.classes, variant))
    predictions = pd.concat(frames, ignore_index=True)
    predictions.to_csv(out_dir / "external_predictions.csv", index=False)
    log.info("external validation: %d images found, %d usable, %d scored", len(manifest), len(rows), len(kept))
    title = f"External validation of {Path(run_dir).name} on {data_cfg.get('root')}"
    transfer = Transfer(run, frames[0], scored.probabilities, scored.crops, out_dir, recalibrate, seed)
    controls, not_scored = site_controls(run, kept, predictions, out_dir)

    def sections(report: Any, external: dict[str, Any]) -> None:
        transfer(report, external)
        report.heading("Controls on this site: the run's own control models, shown no face")
        if controls:
            report.table(site_controls_table(run, controls), caption="the controls trained on the run's split "
                         "(controls/<name>/ of the run dir) scored on this site's photos: face_blind (eye-aligned "
                         "crops, the face region of the run's training photos hidden), capture_only (the photos' four "
                         "corners); 'method minus control' is paired over the same photos of this site (person "
                         "bootstrap)")
        for line in not_scored:
            report.text(f"Not scored: {line}")

    summary = evaluate_run(run_dir, predictions, out_dir, manifest_df=manifest, title=title, sections=sections,
                           extra={"external_controls": controls, "external_controls_not_scored": not_scored})
    return {**summary, "training_overlaps": overlaps, "transfer": transfer.result}
