"""Cold preprocessing pass alone: ``python -m facediag.preprocess data=<...> preprocess=<...>``.

Same Hydra config as ``train.py`` (``conf/train.yaml``). Landmarks every image of the data source
(cached under ``paths.cache_dir``) and writes ``preprocess_report.csv`` and ``qa_grid.png`` (the
backbone's crop geometry) into the run dir, then prints a summary. An entry point: it composes the whole ``train``
config (the generated backbone groups, the strategies' settings), so it imports above the preprocess wing; no
module imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from omegaconf import DictConfig  # noqa: E402

from facediag.core.config import hydra_app  # noqa: E402
from facediag.training.config import register_configs  # noqa: E402


def run(cfg: DictConfig) -> None:
    """Preprocess every record of ``cfg.data.source`` into the run dir ``cfg.paths.output_dir``."""
    import time
    from pathlib import Path

    from hydra.utils import instantiate

    from facediag.core.crop import CropSpec
    from facediag.preprocess.face_results import summarise

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [record.path for record in instantiate(cfg.data.source).records()]
    preprocessor = instantiate(cfg.preprocess)
    start = time.perf_counter()
    results = preprocessor.landmarks(paths)  # no manifest here: each file is hashed once, by the preprocessing
    seconds = time.perf_counter() - start
    preprocessor.report(results).to_csv(out_dir / "preprocess_report.csv", index=False)
    from omegaconf import OmegaConf

    from facediag.models.registry import backbone_config

    # the crop geometry of the configured backbone: its packaged definition with the group's overrides
    align = backbone_config(str(cfg.backbone.name), OmegaConf.to_container(cfg.backbone, resolve=True))["align"]
    preprocessor.qa_grid(results, out_dir / "qa_grid.png", crop=CropSpec.of(align))
    print(summarise(results))
    print(f"{len(paths)} images in {seconds:.1f} s ({len(paths) / max(seconds, 1e-9):.1f} images/s, "
          f"{preprocessor.n_workers} workers; cached images are not recomputed)")  # fmt: skip
    print(f"cache: {preprocessor.cache_dir} (config {preprocessor.config_hash})")
    print(f"wrote {out_dir / 'preprocess_report.csv'} and {out_dir / 'qa_grid.png'}")


main = hydra_app("train", run, register=register_configs)


if __name__ == "__main__":
    main()
