"""The training job behind `train.py`: data → preprocessing → strategy → report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from facediag.data.build import count_table, prepare_data

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one configured job in ``cfg.paths.output_dir``; return its summary."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    data = prepare_data(cfg.data, out_dir)
    print(f"\n{cfg.data.name} / task {cfg.data.task}: {len(data.manifest)} images found, "
          f"{len(data.split)} in the split ({data.split['subject'].nunique()} subjects)")
    print(count_table(data.split, data.classes).to_string())
    summary: dict[str, Any] = {"run_dir": str(out_dir), "n_images": len(data.manifest)}
    if cfg.get("prepare_only"):
        return summary
    return summary
