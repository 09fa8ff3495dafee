"""One generated methods paragraph per results table: what a paper's methods section needs to state.

Data, split and grouping, preprocessing, models and weights, the selection rule, metrics and intervals,
all read from the runs' composed configs and predictions (a reader pastes it into a paper and edits).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from facediag.core.crop import CropSpec
from facediag.evaluation.compare import validation_source
from facediag.evaluation.runs import get_dotted
from facediag.scoring.results import RUN_CONFIG
from facediag.scoring.stats import N_RESAMPLES
from facediag.strategies.predictor import Description, Predictor
from facediag.strategies.registry import strategy_class


def _cfg(row: Any) -> dict[str, Any]:
    return row.entries[0].config or {}


def _short(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1] if target else "?"


def predictor_of(row: Any) -> Predictor | None:
    """The Predictor of a row's first loaded run (its ``run_config.yaml``, else the row's composed config, with
    the packaged backbone definition filled in), found through the strategy registry; None when its strategy
    cannot be found."""
    entry = next((e for e in row.entries if e.run is not None), None)
    if entry is None:
        return None
    run = entry.run
    resolved = Path(run.path) / RUN_CONFIG
    cfg = OmegaConf.load(resolved) if resolved.is_file() else OmegaConf.create(_with_packaged_backbone(_cfg(row)))
    try:
        cls = strategy_class(cfg.get("strategy") or {})
    except ValueError:
        return None
    summary = {**(run.stored_metrics or {}), "classes": list(run.classes), "positive": run.positive}
    variant = row.variant if row.variant in (summary.get("variants") or {}) else None
    return cls.predictor.load(run.path, variant, cfg=cfg, summary=summary)


def _with_packaged_backbone(cfg: dict[str, Any]) -> dict[str, Any]:
    """A composed config whose ``backbone`` is filled with its packaged definition (crop, feature layer), as
    training resolves it."""
    name = get_dotted(cfg, "backbone.name")
    if not name:
        return cfg
    from facediag.models.registry import backbone_config

    try:
        return {**cfg, "backbone": backbone_config(str(name), dict(cfg["backbone"]))}
    except (KeyError, ValueError):
        return cfg


def describe_row(row: Any) -> Description | None:
    """The row's model in words (its strategy's ``Predictor.describe()``); None when the strategy or its config
    cannot be read (the paragraph then names the row as the table does)."""
    try:
        predictor = predictor_of(row)
        return predictor.describe() if predictor is not None else None
    except Exception:  # a run dir too old or too odd to describe must not cost the report its paragraph
        return None


def describe_model(row: Any) -> str:
    """One clause per row: backbone(s) and weights, how they were used, the classifier and its selection."""
    described = describe_row(row)
    return described.model if described is not None else row.name


def _crops_text(crops: dict[str, CropSpec]) -> str:
    if list(crops) == [""]:
        return f"of {crops['']}"
    return "per source: " + ", ".join(f"{name} {crop}" for name, crop in crops.items())


def _crops_sentence(rows: Sequence[Any]) -> str:
    """The crop(s) each row's model saw: once when every row used the same, else per row (fused rows per source)."""
    texts = []
    for row in rows:
        described = describe_row(row)
        texts.append(_crops_text(described.crops) if described is not None else "as configured")
    if len(set(texts)) == 1:
        return f"crops {texts[0]}"
    return "crops " + "; ".join(f"({i + 1}) {text}" for i, text in enumerate(texts))


def _split_sentence(row: Any) -> str:
    data = get_dotted(_cfg(row), "data", {}) or {}
    seeds = sorted({str(get_dotted(e.config, "data.split_seed")) for e in row.entries})
    val = data.get("val_size")
    val_text = (f"a validation part ({float(val):.0%} of the training people) was carved from the training part "
                "only; " if val else "")
    if data.get("split") == "kfold":
        head = (f"{data.get('n_folds')}-fold cross-validation, stratified by class and grouped by person (all "
                f"images of a person in one fold), {len(seeds)} repeat(s) (split seed {', '.join(seeds)}); "
                "the out-of-fold test predictions of each repeat are pooled (every person tested once per repeat)")
    else:
        head = (f"a fixed person-grouped split ({data.get('n_train')} training / {data.get('n_test')} test "
                f"images per class, split seed {', '.join(seeds)})")
    return f"{head}; {val_text}no person or identical image (sha256) is on two sides, and each test part was " \
        "used once, to report"


def _preprocess_sentence(rows: Sequence[Any]) -> str:
    cfg = _cfg(rows[0])
    pre = get_dotted(cfg, "preprocess", {}) or {}
    if not pre.get("detector"):
        return "images used as given (already aligned)"
    return (f"face detection ({_short(get_dotted(pre, 'detector._target_'))}), landmarks "
            f"({_short(get_dotted(pre, 'landmarker._target_'))}), a similarity alignment on "
            f"{get_dotted(pre, 'aligner.points', '?')} landmarks and {_crops_sentence(rows)}; images without "
            f"a face: {pre.get('no_face')} (listed in each run's preprocess_report.csv)")


def methods_paragraph(rows: Sequence[Any], classes: Sequence[str], positive: str | None) -> str:
    """The methods paragraph of one table (see the module docstring)."""
    ok = [r for r in rows if not r.failed]
    if not ok:
        return "Methods: every run of this table failed (see the failed runs)."
    first = ok[0]
    paths = {p for r in ok if r.predictions is not None for p in r.predictions["path"]}
    people = {s for r in ok if r.predictions is not None and "subject" in r.predictions.columns
              for s in r.predictions["subject"].astype(str)}
    pos = f"; positive class {positive}" if len(classes) == 2 and positive else ""
    data = (f"Data: {first.description.get('dataset')}, task {first.description.get('task')} (classes "
            f"{', '.join(classes)}{pos}); {len(paths)} test images of {len(people)} people across the rows.")
    models = "; ".join(f"({i + 1}) {describe_model(r)}" for i, r in enumerate(ok))
    chosen = next((r for r in ok if r.mark == "best"), None)
    sources = sorted({validation_source(r) for r in ok if validation_source(r)})
    selection = ("Selection: the method reported was chosen by its validation accuracy, never by a test score ("
                 + "; ".join(sources or ["validation accuracy"]) + "); hyper-parameters (C, checkpoint, Optuna "
                 "trials) were chosen on validation as well. "
                 + (f"Chosen: {chosen.name} (validation accuracy {chosen.val_accuracy:.3f})."
                    if chosen is not None and chosen.val_accuracy is not None else
                    "No row had a validation accuracy, so none was chosen."))
    metrics = (f"Metrics and intervals: accuracy, balanced accuracy, sensitivity, specificity, precision, F1 "
               f"({'of the positive class' if len(classes) == 2 else 'macro averages'}; scikit-learn conventions, "
               f"zero_division=0) and AUC ({'positive class' if len(classes) == 2 else 'one-vs-rest, macro'}), "
               f"with person-level 95% intervals (percentile cluster bootstrap over people, {N_RESAMPLES} "
               "resamples, when people have several test images; Wilson score intervals with one image per "
               "person); each method was compared with the chosen one on the same test images by McNemar's "
               "exact test on people (a person counts for the method with the larger share of correctly "
               "classified images) and a paired person-bootstrap interval of the accuracy difference, p-values "
               "Holm-adjusted.")
    return " ".join([
        "Methods (generated).", data, f"Split: {_split_sentence(first)}.",
        f"Preprocessing: {_preprocess_sentence(ok)}.", f"Models: {models}.", selection, metrics,
    ])
