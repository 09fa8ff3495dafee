"""The run report's "what the model looks at" section: error gallery, mean saliency per class, feature map.

Only test photos are explained, in batches (Grad-CAM for DTL1 / DTL2; occlusion, ~100 scorings per photo,
for other strategies, on fewer photos). The gallery and the feature map also go to the run's TensorBoard
(``<run>/tensorboard``, tags ``explain/misclassified`` and ``explain/feature_map``) when it has one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.evaluation.report import Report

log = logging.getLogger(__name__)
MAX_GALLERY = 24  # misclassified test photos shown
MAX_CORRECT = {"gradcam": 40, "occlusion": 6}  # correctly classified test photos per class for the mean map
COLUMNS = 6


def gallery_figure(pictures: list[np.ndarray], captions: list[str], png: Path, title: str) -> Path:
    """A grid of overlays with one caption each."""
    from facediag.scoring.plots import image_grid, save_figure

    return save_figure(image_grid(pictures, captions, COLUMNS, title=title), png)


def feature_map_figure(
    embedded: np.ndarray, labels: np.ndarray, roles: np.ndarray, wrong: np.ndarray, classes: list[str], png: Path,
    title: str,
) -> Path:
    """2-D embedding coloured by class; training photos small, test photos large, misclassified test crossed."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from facediag.scoring.plots import save_figure

    fig = Figure(figsize=(6.5, 5.5), dpi=90, layout="constrained")
    ax = fig.subplots()
    colours = colormaps["tab10"]
    test = roles == "test"
    for k, name in enumerate(classes):
        own = labels == name
        ax.scatter(*embedded[own & ~test].T, s=12, alpha=0.45, color=colours(k % 10), label=f"{name} (train)")
        ax.scatter(*embedded[own & test].T, s=40, edgecolors="black", linewidths=0.6, color=colours(k % 10),
                   label=f"{name} (test)")
    if wrong.any():
        ax.scatter(*embedded[wrong].T, s=140, marker="x", color="red", linewidths=2, label="misclassified (test)")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, png)


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (sklearn) of standardised features."""
    from sklearn.manifold import TSNE

    std = features.std(axis=0)
    scaled = (features - features.mean(axis=0)) / np.where(std > 0, std, 1.0)
    perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(scaled)


def _image(png: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB"))


def to_tensorboard(run_dir: Path, images: dict[str, Path]) -> bool:
    """Add the PNGs as images to the run's TensorBoard run (``tensorboard/<run name>``, or ``tensorboard``
    itself for older runs), if it has one."""
    folder = run_dir / "tensorboard"
    if not folder.is_dir() or not images:
        return False
    folder = next((events.parent for events in sorted(folder.rglob("events.out.tfevents.*"))), folder)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(folder)) as writer:
        for tag, png in images.items():
            writer.add_image(tag, _image(png), dataformats="HWC")
    return True


def _feature_set(run_dir: Path) -> Any:
    """Train, val and test features of the run in its Predictor's feature space (stored, else computed once and
    kept: facediag.apply.neighbours); None when its strategy has none."""
    from facediag.apply.neighbours import run_features
    from facediag.apply.trained_run import TrainedRun
    from facediag.strategies.predictor import CapabilityError

    try:
        return run_features(TrainedRun(run_dir), ("train", "val", "test"))
    except CapabilityError:
        return None


def add_explanations(report: Report, run: Any, variant: str, figures: Path) -> dict[str, Path]:
    """Append the section to ``report`` (figures into ``figures``); returns the figures written by tag.

    Never fails the report: when the run's model cannot be loaded the section says why.
    """
    report.heading("What the model looks at")
    written: dict[str, Path] = {}
    for part, what in ((_saliency_figures, "saliency"), (_feature_map, "feature map")):
        try:
            written.update(part(report, run, variant, figures))
        except Exception as err:  # a missing weight file or model must not cost the rest of the report
            log.warning("%s skipped: %s", what, err)
            report.text(f"No {what} for this run: {type(err).__name__}: {err}")
    if to_tensorboard(Path(run.path), written):
        report.text(f"Gallery and feature map also written to TensorBoard: {Path(run.path) / 'tensorboard'}.")
    return written


def _saliency_figures(report: Report, run: Any, variant: str, figures: Path) -> dict[str, Path]:
    from facediag.apply.explain import Explainer
    from facediag.apply.saliency import overlay
    from facediag.apply.trained_run import TrainedRun

    trained = TrainedRun(run.path)
    explainer = Explainer(trained)
    test = run.predictions[(run.predictions["variant"] == variant) & (run.predictions["role"] == "test")]
    wrong = test[test["label"] != test["pred"]].head(MAX_GALLERY)
    right = test[test["label"] == test["pred"]].groupby("label", group_keys=False).head(MAX_CORRECT[explainer.method])
    chosen = pd.concat([wrong, right])
    explained = explainer.explain(chosen["path"].astype(str).tolist())
    row = {p: i for i, p in enumerate(explained.paths)}
    written: dict[str, Path] = {}
    method = {"gradcam": "Grad-CAM", "occlusion": "occlusion sensitivity"}[explainer.method]
    report.text(f"Saliency by {method} of the predicted class on the aligned crops the model saw (red = more "
                f"important); {len(explained.paths)} test photos explained ({len(chosen) - len(explained.paths)} "
                "without a crop).")

    shown = wrong[wrong["path"].astype(str).isin(row)]
    if shown.empty:
        report.text(f"{variant}: no misclassified test photo" + (" with a crop." if len(wrong) else "."))
    else:
        pictures, captions = [], []
        for _, item in shown.iterrows():
            i = row[str(item["path"])]
            pictures.append(overlay(explained.crops[i], explained.saliency[i], explained.landmarks[i]))
            score = float(item.get(f"score_{item['pred']}", float("nan")))
            captions.append(f"{Path(str(item['path'])).name}\ntrue {item['label']} / pred {item['pred']}\n"
                            f"score {score:.2f}")
        title = f"{variant}: misclassified test photos ({len(shown)} of {int((test['label'] != test['pred']).sum())})"
        written["explain/misclassified"] = gallery_figure(pictures, captions, figures / "misclassified.png", title)
        report.figure(written["explain/misclassified"], caption=f"{title}; score = the predicted class's score")

    correct = right[right["path"].astype(str).isin(row)]
    if not correct.empty:
        indices = [row[str(p)] for p in correct["path"]]
        mean_face = explained.crops[indices].mean(axis=0).round().astype(np.uint8)
        pictures, captions = [], []
        for name, part in correct.groupby("label", sort=False):
            own = [row[str(p)] for p in part["path"]]
            maps = np.stack([m / m.max() if m.max() > 0 else m for m in np.clip(explained.saliency[own], 0, None)])
            pictures.append(overlay(mean_face, maps.mean(axis=0), np.nanmean(explained.landmarks[own], axis=0)))
            captions.append(f"{name}\nmean of {len(own)} correct")
        png = gallery_figure(pictures, captions, figures / "mean_saliency.png", "Mean saliency per class on the "
                             "mean aligned face")
        report.figure(png, caption="Mean saliency per class over correctly classified test photos (each map scaled "
                      "to [0, 1] first), drawn on the mean aligned test face with the mean landmarks")

    return written


def _feature_map(report: Report, run: Any, variant: str, figures: Path) -> dict[str, Path]:
    strategy = str(run.setting("strategy.name"))
    features = _feature_set(Path(run.path))
    written: dict[str, Path] = {}
    test = run.predictions[(run.predictions["variant"] == variant) & (run.predictions["role"] == "test")]
    if features is not None and len(features) >= 5:
        embedded = tsne(features.features)
        missed = set(test.loc[test["label"] != test["pred"], "path"].astype(str))
        crossed = (features.roles == "test") & np.isin(features.paths.astype(str), list(missed))
        title = f"t-SNE of the {strategy} features: {int((features.roles != 'test').sum())} train/val, " \
                f"{int((features.roles == 'test').sum())} test photos"
        written["explain/feature_map"] = feature_map_figure(embedded, features.labels, features.roles, crossed,
                                                            list(run.classes), figures / "feature_map.png", title)
        report.figure(written["explain/feature_map"], caption=f"{title}; coloured by true class, misclassified test "
                      "photos crossed in red. Clusters by class suggest the features separate the classes; "
                      "clusters by anything else (session, camera) deserve a look")
    return written
