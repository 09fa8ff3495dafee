"""Train and test one configuration: `python train.py [group=option ...] [-m for sweeps]`."""

import os

from facediag.core.startup import pause_collection, resume_collection

pause_collection()  # until the job's libraries are imported (facediag.core.startup)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from facediag.core.errors import exit_on_user_error  # noqa: E402
from facediag.training.config import register_configs  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Run one job; return its validation score when ``optimized_metric`` is set (what Optuna maximises)."""
    from facediag.training.multirun import optimized_value
    from facediag.training.train import train

    resume_collection()

    summary = train(cfg)
    return optimized_value(summary, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
