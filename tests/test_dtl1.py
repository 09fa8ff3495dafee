"""DTL1's fine-tuning settings: declared once (SGDSettings), saved with the checkpoint, rebuilt from it."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from facediag.models import create
from facediag.models.face_backbone import NormalizedHead
from facediag.strategies.dtl1 import DTL1, FineTune, SGDSettings


def test_strategy_and_module_take_the_same_settings_with_the_papers_defaults():
    assert DTL1().sgd == SGDSettings() == SGDSettings(lr=5e-5, weight_decay=5e-4, momentum=0.9)
    model = FineTune(create("dlib_resnet", "none"), 2)
    assert {k: model.hparams[k] for k in ("lr", "weight_decay", "momentum")} == {
        "lr": 5e-5, "weight_decay": 5e-4, "momentum": 0.9}
    with pytest.raises(TypeError, match="learning_rate"):
        DTL1(learning_rate=0.1)


def test_a_checkpoint_rebuilds_the_module_with_its_settings(tmp_path: Path):
    model = FineTune(create("dlib_resnet", "none"), 3, lr=1e-3, head_norm=True, freeze_stages=1)
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)
    loaded = FineTune.load_from_checkpoint(ckpt, backbone=create("dlib_resnet", "none"), weights_only=True)
    assert loaded.hparams["lr"] == 1e-3 and loaded.hparams["num_classes"] == 3
    assert isinstance(loaded.net.head, NormalizedHead)
    optimizer = loaded.configure_optimizers()
    assert {group["lr"] for group in optimizer.param_groups} == {1e-3}


def test_loaders_take_batch_size_and_workers_from_the_data_group(tmp_path: Path):
    from facediag.strategies.job import Job
    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, "data.batch_size=5", "data.num_workers=1")
    job = Job(cfg, tmp_path, split=None, classes=[], positive=None, faces=None, make_trainer=None)
    assert job.loader_options == {"batch_size": 5, "num_workers": 1}
    for strategy in ("dtl1", "dtl2"):  # one source of truth: no strategy-level batch size
        assert "batch_size" not in compose_train(tmp_path, f"strategy={strategy}").strategy


def test_the_dtl1_config_takes_its_settings_from_sgd_settings_and_overrides_them(tmp_path: Path):
    import dataclasses

    from tests.conftest import compose_train

    defaults = dataclasses.asdict(SGDSettings())
    cfg = compose_train(tmp_path, "strategy=dtl1", "strategy.lr=0.01")
    assert {key: cfg.strategy[key] for key in defaults} == {**defaults, "lr": 0.01}
    assert DTL1(**{k: v for k, v in cfg.strategy.items() if k != "_target_"}).sgd == SGDSettings(lr=0.01)


def test_a_standardising_head_keeps_nearly_constant_features_finite_and_leaves_varied_ones_alone():
    import torch

    from facediag.models.face_backbone import NormalizedHead

    torch.manual_seed(0)
    varied = torch.randn(64, 32) * 0.05 + 0.1
    head = NormalizedHead(32, 2).fit(varied)
    assert torch.allclose(head.std, varied.std(dim=0).clamp_min(0.1 * float(varied.std(dim=0).mean())))
    # crops that barely differ (a face-blind control's): features of normal size, almost no spread
    constant = 0.1 + 1e-7 * torch.randn(64, 32)
    standardized = (constant - NormalizedHead(32, 2).fit(constant).mean) / NormalizedHead(32, 2).fit(constant).std
    assert torch.isfinite(standardized).all() and standardized.abs().max() < 0.1
