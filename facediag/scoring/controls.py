"""A method's test accuracy beside its controls' (face-blind, capture-only; see facediag.training.controls): the
control's accuracy with its interval, whether it beats chance, and what the face adds (method minus control, paired
over people). Read from a run dir's ``controls/<name>/predictions.csv``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

CONTROLS_DIR = "controls"
CONTROLS = ("face_blind", "capture_only")  # facediag.training.controls trains them
#: what a control above chance means, for the WARNING line
WHAT_IT_MEANS = {
    "face_blind": "the method's own crops with the face hidden tell the classes above chance: part of this accuracy "
                  "need not come from the face (background, hair, clothing, grain; preprocess.harmonise removes "
                  "most of it)",
    "capture_only": "the photos' corners alone tell the classes above chance: capture (camera, processing, "
                    "background) differs between the classes; check the face-blind control and harmonise",
}


def control_predictions(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """{control name: its predictions.csv} of a run dir (empty for runs without controls)."""
    from facediag.scoring.results import TEXT_COLUMNS

    folder = Path(run_dir) / CONTROLS_DIR
    if not folder.is_dir():
        return {}
    return {p.parent.name: pd.read_csv(p, dtype=TEXT_COLUMNS)
            for p in sorted(folder.glob("*/predictions.csv"))}


def compare(method: pd.DataFrame, control: pd.DataFrame, classes: Sequence[str], positive: str | None
            ) -> dict[str, dict[str, Any]]:
    """Per variant: the control's test accuracy with its interval, the chance level, whether the control beats
    it, and the paired difference method minus control (person bootstrap, McNemar over people) on the photos
    both scored."""
    from facediag.scoring.results import metrics_for, subjects_of
    from facediag.scoring.stats import paired_comparison

    out: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(control["variant"]):
        ours = method[(method["variant"] == variant) & (method["role"] == "test")]
        theirs = control[(control["variant"] == variant) & (control["role"] == "test")]
        keys = ["path", "split_seed"] if "split_seed" in ours and "split_seed" in theirs else ["path"]
        both = ours.merge(theirs[[*keys, "pred"]], on=keys, suffixes=("", "_control"))
        if both.empty:
            continue
        metrics = metrics_for(theirs, classes, positive)
        chance = float(theirs["label"].value_counts(normalize=True).max())
        paired = paired_comparison((both["pred"] == both["label"]).to_numpy(),
                                   (both["pred_control"] == both["label"]).to_numpy(), subjects_of(both))
        out[variant] = {
            "accuracy": metrics["accuracy"], "accuracy_ci": metrics["accuracy_ci"],
            "accuracy_ci_method": metrics["accuracy_ci_method"], "n": metrics["n"], "chance": chance,
            "above_chance": bool(metrics["accuracy_ci"][0] > chance),
            "face_gap": paired.accuracy_difference, "face_gap_ci": list(paired.difference_ci),
            "face_gap_p": paired.p_value,
            "n_paired": int(len(both)),
        }
    return out



def control_lines(controls: dict[str, dict[str, Any]], variant: str) -> list[str]:
    """The summary lines of one variant's controls, a WARNING where a control beats chance."""
    lines = []
    for name, by_variant in controls.items():
        c = by_variant.get(variant)
        if c is None:
            continue
        low, high = c["accuracy_ci"]
        gap_low, gap_high = c["face_gap_ci"]
        lines.append(f"    {name} control {c['accuracy']:.3f} [{low:.3f}-{high:.3f}] (chance {c['chance']:.3f}); "
                     f"method minus control {c['face_gap']:+.3f} [{gap_low:+.3f} to {gap_high:+.3f}]")
        if c["above_chance"]:
            lines.append(f"    WARNING: {WHAT_IT_MEANS.get(name, 'this control reads the classes above chance')}")
    return lines


def controls_table(controls: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One display row per control x variant."""
    rows = []
    for name, by_variant in controls.items():
        for variant, c in by_variant.items():
            low, high = c["accuracy_ci"]
            gap_low, gap_high = c["face_gap_ci"]
            rows.append({"control": name, "variant": variant,
                         "accuracy [95% CI]": f"{c['accuracy']:.3f} [{low:.3f}-{high:.3f}]",
                         "chance": f"{c['chance']:.3f}", "beats chance": "WARNING: yes" if c["above_chance"] else "no",
                         "method minus control [95% CI]": f"{c['face_gap']:+.3f} [{gap_low:+.3f} to {gap_high:+.3f}]",
                         "McNemar p": f"{c['face_gap_p']:.3g}", "photos paired": c["n_paired"]})
    return pd.DataFrame(rows)


def run_controls_of(run_dir: str | Path, predictions: pd.DataFrame, classes: Sequence[str], positive: str | None
                    ) -> dict[str, dict[str, Any]]:
    """Every control of a run dir recomputed from its predictions against the method's ``predictions``."""
    return {name: compare(predictions, frame, classes, positive)
            for name, frame in control_predictions(run_dir).items()}
