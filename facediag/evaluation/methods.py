"""One generated methods paragraph per results table: what a paper's methods section needs to state.

Data, split and grouping, preprocessing, models and weights, the selection rule, metrics and intervals,
all read from the runs' composed configs and predictions (a reader pastes it into a paper and edits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from facediag.evaluation.compare import validation_source
from facediag.evaluation.runs import get_dotted
from facediag.scoring.stats import N_RESAMPLES


def _cfg(row: Any) -> dict[str, Any]:
    return row.entries[0].config or {}


def _short(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1] if target else "?"


def _grid(values: Any) -> str:
    return "{" + ", ".join(f"{float(v):g}" for v in values) + "}" if isinstance(values, list) else str(values)


def describe_model(row: Any) -> str:
    """One clause per row: backbone and weights, how they were used, the classifier and its selection."""
    cfg = _cfg(row)
    strategy = get_dotted(cfg, "strategy", {}) or {}
    kind = row.description.get("strategy")
    backbone, weights = row.description.get("backbone"), row.description.get("weights")
    if kind == "dtl2":
        scale = "standardised " if strategy.get("standardize") else ""
        return (f"{backbone} pretrained on {weights} as a frozen feature extractor, {scale}features into a linear "
                f"SVM with C from {_grid(strategy.get('C_grid'))} by {strategy.get('cv_folds')}-fold person-grouped "
                "CV on the training part (DTL2)")
    if kind == "dtl1":
        return (f"{backbone} pretrained on {weights}, fine-tuned with a new {len(_classes(row))}-class head (DTL1: "
                f"SGD lr {strategy.get('lr')}, momentum {strategy.get('momentum')}, weight decay "
                f"{strategy.get('weight_decay')}, head lr x{strategy.get('head_lr_mult')}, batch "
                f"{get_dotted(cfg, 'data.batch_size')}, at most {strategy.get('max_epochs')} epochs, early stopping "
                "on the "
                f"validation loss with patience {strategy.get('patience')}, the best checkpoint tested)")
    if kind == "dsift":
        return (f"dense SIFT (step {strategy.get('step')} px, sizes {strategy.get('sizes')}) on "
                f"{strategy.get('crop_size')} px aligned faces, a bag of {strategy.get('n_words')} visual words "
                "fitted on the training images, "
                f"SVM {row.variant or ''} with C from {_grid(strategy.get('C_grid'))} by person-grouped CV")
    return f"{backbone} / {weights} / {kind}"


def _classes(row: Any) -> list[str]:
    run = next((e.run for e in row.entries if e.run is not None), None)
    return list(run.classes) if run is not None else []


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


def _preprocess_sentence(row: Any) -> str:
    cfg = _cfg(row)
    pre = get_dotted(cfg, "preprocess", {}) or {}
    align = get_dotted(cfg, "backbone.align", {}) or {}
    if not pre.get("detector"):
        return "images used as given (already aligned)"
    return (f"face detection ({_short(get_dotted(pre, 'detector._target_'))}), landmarks "
            f"({_short(get_dotted(pre, 'landmarker._target_'))}), a similarity alignment on "
            f"{get_dotted(pre, 'aligner.points', '?')} landmarks and crops of {align.get('size', 150)} px "
            f"({align.get('template', 'dlib')} template, padding {align.get('padding', 0.25)}); images without "
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
        f"Preprocessing: {_preprocess_sentence(first)}.", f"Models: {models}.", selection, metrics,
    ])
