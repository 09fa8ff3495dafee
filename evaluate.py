"""Evaluate training runs from their saved predictions: `python evaluate.py run=<dir>` or `sweep=<dir|glob>`."""

import os

from facediag.core.startup import pause_collection, resume_collection

pause_collection()  # until the evaluation's libraries are imported (facediag.core.startup)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from facediag.core.errors import exit_on_user_error  # noqa: E402
from facediag.training.config import register_configs  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from facediag.evaluation.cli import evaluate

    resume_collection()

    sweep = OmegaConf.to_object(cfg.sweep) if OmegaConf.is_config(cfg.sweep) else cfg.sweep
    evaluate(run=cfg.run, sweep=sweep, out_dir=cfg.paths.output_dir, data=cfg.get("data"),
             recalibrate=cfg.get("recalibrate"), seed=int(cfg.get("seed") or 0))


if __name__ == "__main__":
    main()
