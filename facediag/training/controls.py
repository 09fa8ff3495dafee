"""Controls beside every result: the same method, trained and tested on the same split, shown only what a
face-blind reader sees (``face_blind``) or the photo's corners (``capture_only``); the views themselves are
:mod:`facediag.apply.control_views`.

The control's features have caches of their own (its name is part of the key), its files go to
``controls/<name>/`` of the run dir, and :func:`facediag.scoring.controls.compare` sets its test accuracy beside the
method's: the paired person-bootstrap difference (method minus control, what the face adds) and a flag when the
control itself beats chance (its interval's lower bound above the majority-class share of the test photos).
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Sequence
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from facediag.apply.control_views import ControlData
from facediag.scoring.controls import CONTROLS_DIR, compare

log = logging.getLogger(__name__)


def control_job(job: Any, name: str, preprocessor: Any) -> Any:
    """The training job as the control ``name`` sees it: its own crops, landmarks, cache key and folder."""
    cfg: DictConfig = OmegaConf.create(OmegaConf.to_container(job.cfg, resolve=True))
    with open_dict(cfg):
        cfg.preprocess.control = name  # part of every feature-cache key: the control's features are cached apart
    data = ControlData(name, preprocessor, job.split)
    out_dir = job.out_dir / CONTROLS_DIR / name
    out_dir.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(job, cfg=cfg, out_dir=out_dir, split=data.rows, faces=data.faces,
                               tb_logger=None, info={})


def run_controls(strategy: Any, job: Any, preprocessor: Any, predictions: pd.DataFrame, names: Sequence[str]
                 ) -> dict[str, dict[str, Any]]:
    """Train and test ``strategy`` again under each control of ``names``; what metrics.json records under
    ``controls`` ({control: {variant: ...}}, see :func:`compare`, plus the control's ``val_accuracy`` on the
    training part and ``val_chance``, the majority share there: evaluation.compare's selection penalty). Each
    control's predictions.csv is kept in ``controls/<name>/``; a control that cannot be trained is named in the
    job's ``controls_failed`` (metrics.json) with its reason, its traceback in ``controls/<name>/FAILED``."""
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        sub = control_job(job, name, preprocessor)
        try:
            predictor = strategy.fit(sub)
        except Exception as err:  # a control that cannot be trained leaves the method's result standing, named
            (sub.out_dir / "FAILED").write_text(traceback.format_exc())
            log.warning("control %s could not be trained (%s): the run has no %s control", name, err, name)
            job.info.setdefault("controls_failed", {})[name] = str(err)
            continue
        predictor.save(sub.out_dir)
        control = predictor.predictions
        control.to_csv(sub.out_dir / "predictions.csv", index=False)
        found[name] = compare(predictions, control, job.classes, job.positive)
        fitted = sub.split[sub.split["role"].isin(["train", "val"])]
        val_chance = float(fitted["label"].value_counts(normalize=True).max())
        for variant, c in found[name].items():  # the control's own validation score, inside the training part
            own = (sub.info.get("variant_info") or {}).get(variant) or sub.info
            c.update(val_accuracy=own.get("val_accuracy"), val_chance=val_chance)
        for variant, c in found[name].items():
            log.info("control %s (%s): accuracy %.3f, method minus control %+.3f", name, variant, c["accuracy"],
                     c["face_gap"])
    return found
