"""External validation: apply a trained run to another labelled folder with the run's preprocessing and classes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from facediag.data.records import build_manifest, usable
from facediag.evaluation.single import evaluate_run
from facediag.inference import TrainedRun
from facediag.preprocess.pipeline import results_frame
from facediag.results import prediction_frame

log = logging.getLogger(__name__)


def run_class_aliases(run: TrainedRun) -> dict[str, list[str]]:
    """The run's classes with the aliases its data config knew (DSF: 'beta-thalassemia' → D1, ...)."""
    known = run.cfg.data.get("classes")
    aliases = OmegaConf.to_container(known) if isinstance(known, DictConfig) else {}
    return {c: list(aliases.get(c) or []) for c in run.classes}


def external_validation(run_dir: str | Path, data_cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Score every image of ``data_cfg``'s folder with the run's model; report the same metrics.

    Class folders are matched to the run's classes (tolerant of case, spaces, hyphens and the run's
    aliases); an unknown class name is an error naming the folder. Images without a face are listed
    in the external preprocess_report.csv, not silently dropped.
    """
    run = TrainedRun(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_cfg = OmegaConf.merge(data_cfg.source, {"classes": run_class_aliases(run), "positive": run.positive})
    source = instantiate(source_cfg, _convert_="all")
    manifest = build_manifest(source.records())
    manifest.to_csv(out_dir / "external_manifest.csv", index=False)
    rows = usable(manifest).assign(role="test")
    scored = run.score(list(rows["path"]))
    results_frame(scored.results).to_csv(out_dir / "external_preprocess_report.csv", index=False)
    position = {path: i for i, path in enumerate(rows["path"])}
    kept = rows.iloc[[position[p] for p in scored.paths]]
    predictions = prediction_frame(kept, scored.scores, run.classes, run.strategy)
    predictions.to_csv(out_dir / "external_predictions.csv", index=False)
    log.info("external validation: %d images found, %d usable, %d scored", len(manifest), len(rows), len(kept))
    title = f"External validation of {Path(run_dir).name} on {data_cfg.get('root')}"
    return evaluate_run(run_dir, predictions, out_dir, manifest_df=manifest, title=title)
