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
    from facediag.models.face_backbone import STD_FLOOR

    torch.manual_seed(0)
    varied = 1.0 + torch.randn(64, 32) * torch.linspace(0.15, 0.4, 32)  # dlib's faces: std 0.09-0.38 of |f| 1.16
    head = NormalizedHead(32, 2).fit(varied)
    assert torch.equal(head.std, varied.std(dim=0))
    # crops that barely differ (a face-blind control's): features of normal size, almost no spread
    constant = 1.0 + 1e-3 * torch.randn(64, 32)
    head = NormalizedHead(32, 2).fit(constant)
    assert torch.allclose(head.std, torch.full((32,), STD_FLOOR * float(constant.abs().mean())), rtol=1e-4)


def face_blind_like_crops(n: int) -> torch.Tensor:
    """``n`` 150 px crops that differ only by noise outside one large region filled with one grey."""
    import numpy as np

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (1, 150, 150, 3)) + rng.normal(0, 8, (n, 150, 150, 3))
    crops[:, 20:130, 25:125] = 128
    return torch.from_numpy(np.clip(crops, 0, 255).astype(np.uint8))


def test_fine_tuning_on_crops_that_barely_differ_does_not_diverge():
    """The face-blind control of london_table (dlib DTL1, small-budget preset) diverged: its standardised features
    (std 0.001-0.06) multiplied the trunk's effective learning rate by 1 / std**2 (loss 278, 258188, NaN here)."""
    torch.manual_seed(0)
    model = FineTune(create("dlib_resnet", "dlib_faces"), 2, channels_last=False, lr=1e-4, head_lr_mult=10.0,
                     head_norm=True)  # the preset's settings
    crops, targets = face_blind_like_crops(8), torch.arange(8) % 2
    with torch.no_grad():
        model.net.eval()
        model.net.head.fit(model.net.penultimate(model.net.preprocess(crops)))
        model.net.train()
    optimizer = model.configure_optimizers()
    losses = []
    for step in range(3):
        batch = slice(4 * (step % 2), 4 * (step % 2) + 4)
        loss = torch.nn.functional.cross_entropy(model(crops[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(loss < 1.0 for loss in losses), losses


def test_a_diverged_training_step_stops_fine_tuning_with_the_reason():
    model = FineTune(create("dlib_resnet", "none"), 2)
    with torch.no_grad():
        model.net.head.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="DTL1 diverged: training loss nan at epoch 0, batch 3"):
        model.training_step((face_blind_like_crops(2), torch.tensor([0, 1]), torch.arange(2)), 3)
