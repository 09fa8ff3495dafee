"""The training job behind `train.py`: data → preprocessing → strategy → results."""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from facediag.core.crop import CropSpec
from facediag.core.quiet import quiet_third_party
from facediag.data.build import PreparedData, count_table, prepare_data, with_face_status
from facediag.scoring.controls import control_lines
from facediag.scoring.permutation import PermutationResult
from facediag.scoring.results import DISCLAIMER, FAILED, RUN_CONFIG, write_results
from facediag.strategies.registry import trait, uses_backbone
from facediag.training.multirun import completed_summary

log = logging.getLogger(__name__)


def run_name(cfg: DictConfig) -> str:
    """The TensorBoard run's name: method, task, fold and seed (``dlib_resnet-dlib_faces-dtl2_sex_fold0_seed42``)."""
    method = [cfg.backbone.name, cfg.weights.name] if uses_backbone(cfg.strategy) else []
    fold = f"fold{cfg.data.fold}" if cfg.data.split == "kfold" else str(cfg.data.split)
    method_name = "-".join(str(part) for part in [*method, cfg.strategy.name])
    return f"{method_name}_{cfg.data.task}_{fold}_seed{cfg.seed}"


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Instantiate every logger of the `logger` group (may be empty); an empty ``version`` gets :func:`run_name`."""
    return [
        instantiate(node, **({"version": run_name(cfg)} if "version" in node and not node.version else {}))
        for node in (cfg.get("logger") or {}).values()
        if node and "_target_" in node
    ]


def tensorboard_of(loggers: Sequence[Any]) -> Any:
    from pytorch_lightning.loggers import TensorBoardLogger

    return next((lg for lg in loggers if isinstance(lg, TensorBoardLogger)), None)


def preprocess_split(cfg: DictConfig, data: PreparedData, out_dir: Path, tb_logger: Any) -> tuple[Any, pd.DataFrame]:
    """Landmarks for every split image (cached), preprocess_report.csv, manifest.csv with each file's face status,
    QA grid; the rows with a face."""
    preprocessor = instantiate(cfg.preprocess)
    results = preprocessor.landmarks(data.split)  # the split's sha256 column: no file is hashed again
    report = preprocessor.report(results)
    report.to_csv(out_dir / "preprocess_report.csv", index=False)
    data.manifest = with_face_status(data.manifest, report)
    data.manifest.to_csv(out_dir / "manifest.csv", index=False)
    for result in results:
        if not result.has_crop:
            log.warning("no crop for %s: %s %s", result.path, result.status, result.reason)
    crop = CropSpec.of(cfg.backbone.get("align") or {})
    grid = preprocessor.qa_grid(results, out_dir / "qa_grid.png", crop=crop)
    if tb_logger is not None:
        tb_logger.experiment.add_image("qa/aligned_faces", grid, 0, dataformats="HWC")
    return preprocessor, data.split[[r.has_crop for r in results]].reset_index(drop=True)


def control_names(cfg: DictConfig) -> list[str]:
    """The controls this run trains beside the method (``controls``); a strategy whose class says
    ``controls_by_default = False`` (DTL1: each control is another fine-tuning) only with ``controls_dtl1``."""
    if not trait(cfg.strategy, "controls_by_default", True) and not cfg.get("controls_dtl1"):
        return []
    return list(cfg.get("controls") or [])


def macs_and_params(cfg: DictConfig, num_classes: int) -> tuple[int | None, int | None]:
    """MACs / parameters of the adapted model (with its num_classes head); None for DSIFT."""
    if not uses_backbone(cfg.strategy):
        return None, None
    from facediag.models.flops import cached_count_macs

    return cached_count_macs(cfg.backbone.name, cfg.weights.name, num_classes, cfg.paths.get("cache_dir"))


def run_info(cfg: DictConfig, data: PreparedData, split: pd.DataFrame) -> dict[str, Any]:
    roles = split["role"].value_counts()
    uses_cnn = uses_backbone(cfg.strategy)
    return {
        "task": str(cfg.data.task),
        "dataset": str(cfg.data.name),
        "classes": data.classes,
        "positive": data.positive,
        "backbone": str(cfg.backbone.name) if uses_cnn else None,
        "weights": str(cfg.weights.name) if uses_cnn else None,
        "strategy": str(cfg.strategy.name),
        "n_train": int(roles.get("train", 0)),
        "n_val": int(roles.get("val", 0)),
        "n_test": int(roles.get("test", 0)),
        "n_skipped": int(len(data.split) - len(split)),
        "fold": int(cfg.data.fold) if cfg.data.split == "kfold" else None,
        "split_seed": int(cfg.data.split_seed),
    }


def with_packaged_backbone(cfg: DictConfig) -> None:
    """Fill ``cfg.backbone`` with the packaged definition, the group's non-null keys overriding it."""
    from facediag.models.registry import backbone_config

    if cfg.get("backbone") and cfg.backbone.get("name"):
        merged = backbone_config(str(cfg.backbone.name), OmegaConf.to_container(cfg.backbone, resolve=True))
        with open_dict(cfg):
            cfg.backbone = OmegaConf.create(merged)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one configured job in ``cfg.paths.output_dir``; a failure leaves a FAILED file there."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _train(cfg, out_dir)
    except Exception:  # recorded in the run dir (the sweep report lists it), then raised
        (out_dir / FAILED).write_text(traceback.format_exc())
        raise


def _train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    quiet_third_party()
    with_packaged_backbone(cfg)
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    if cfg.get("skip_completed") and (done := completed_summary(out_dir, resolved)) is not None:
        log.info("skipped: %s already holds complete results of this configuration", out_dir)
        print(f"skipped: {out_dir} already holds complete results of this configuration")
        return done
    (out_dir / FAILED).unlink(missing_ok=True)
    (out_dir / RUN_CONFIG).write_text(resolved)
    data = prepare_data(cfg.data, out_dir, cache_dir=cfg.paths.cache_dir, preprocess_cfg=cfg.preprocess)
    print(
        f"\n{cfg.data.name} / task {cfg.data.task}: {len(data.manifest)} files found, "
        f"{len(data.split)} in the split ({data.split['subject'].nunique()} subjects)"
    )
    if cfg.get("prepare_only"):  # files, split and counts only: torch and Lightning are not even imported
        print(count_table(data.manifest, data.split, data.classes).to_string())
        return {"run_dir": str(out_dir), "n_images": len(data.manifest)}
    import pytorch_lightning as pl
    import torch

    from facediag.strategies.job import Job
    from facediag.training.controls import run_controls
    from facediag.training.permutations import run_permutations

    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(cfg.seed, workers=True)  # the files and the split above draw from seeded generators of their own

    loggers = build_loggers(cfg)
    tb_logger = tensorboard_of(loggers)
    preprocessor, split = preprocess_split(cfg, data, out_dir, tb_logger)
    print("files per class and role (those left out per status; manifest.csv lists each):")
    print(count_table(data.manifest, data.split, data.classes).to_string())

    extra_callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]

    def make_trainer(**overrides: Any) -> pl.Trainer:
        callbacks = [*overrides.pop("callbacks", []), *extra_callbacks]
        return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **overrides)

    job = Job(
        cfg=cfg,
        out_dir=out_dir,
        split=split,
        classes=data.classes,
        positive=data.positive,
        faces=functools.partial(preprocessor.faces, split),
        make_trainer=make_trainer,
        tb_logger=tb_logger,
    )
    strategy = instantiate(cfg.strategy, _convert_="all")
    predictor = strategy.fit(job)  # a Predictor (facediag.strategies.predictor) with the test predictions
    predictor.save(out_dir)
    predictions = predictor.predictions
    controls = run_controls(strategy, job, preprocessor, predictions, control_names(cfg))
    permuted = run_permutations(strategy, job, predictions, int(cfg.permutations)) if cfg.get("permutations") else {}

    # a strategy may count its own (fused DTL2: the sum over its sources)
    macs, params = (None, None) if "macs" in job.info else macs_and_params(cfg, len(data.classes))
    info = {
        **run_info(cfg, data, split),
        "macs": macs,
        "params": params,
        **job.info,
        **({"controls": controls} if controls else {}),
        **({"permutation": {v: r.to_dict() for v, r in permuted.items()}} if permuted else {}),
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    summary = write_results(out_dir, predictions, data.classes, data.positive, info, tb_logger)
    print_summary(summary, out_dir)
    return summary


def print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """One screen: what ran and the test accuracy of every variant with its 95% interval."""
    what = " / ".join(str(summary[k]) for k in ("dataset", "task", "backbone", "weights", "strategy") if summary.get(k))
    print(f"\n{what}   (n_train={summary['n_train']}, n_val={summary['n_val']}, n_test={summary['n_test']})")
    for name, m in summary["variants"].items():
        low, high = m["accuracy_ci"]
        auc = f"  AUC {m['auc']:.3f}" if m.get("auc") is not None else ""
        print(
            f"  {name:<12} accuracy {m['accuracy']:.3f}  [95% CI {low:.3f}-{high:.3f}, {m['accuracy_ci_method']}]  "
            f"({m['n_correct']}/{m['n']}){auc}"
        )
        for line in control_lines(summary.get("controls") or {}, name):
            print(line)
        if (permutation := (summary.get("permutation") or {}).get(name)) is not None:
            print(f"    {PermutationResult.from_dict(permutation).summary()}")
    for control, reason in (summary.get("controls_failed") or {}).items():
        print(f"    {control} control: not trained ({reason})")
    print(f"  wall time {summary['wall_time_s']:.1f} s   run dir: {out_dir}")
    print(f"  {DISCLAIMER}\n")
