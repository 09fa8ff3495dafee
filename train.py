"""Train and test one configuration: `python train.py [group=option ...] [-m for sweeps]`."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from facediag.config import register_resolvers  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from facediag.training import train

    train(cfg)


if __name__ == "__main__":
    main()
