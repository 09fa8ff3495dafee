"""DTL1: fine-tune a pretrained CNN with a fresh last layer (SGD, early stopping on validation).

The best checkpoint by validation loss is restored for the test pass: EarlyStopping alone would test
the last, over-trained weights.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from facediag.data.datamodule import FaceDataModule, build_augment
from facediag.models.face_backbone import NormalizedHead
from facediag.scoring.results import prediction_frame
from facediag.strategies.job import FULL_PRECISION, Job
from facediag.strategies.predictor import Description, Predictor
from facediag.strategies.registry import register_strategy
from facediag.strategies.sgd import SGDSettings

log = logging.getLogger(__name__)
VAL_SOURCE = "accuracy of the best checkpoint on the validation split (people held out from training; also used " \
    "for early stopping)"


def top_k_error(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Fraction of samples whose true class is not among the k highest logits."""
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
    return 1.0 - hits.float().mean()


class FineTune(pl.LightningModule):
    """A backbone with a ``num_classes`` head, trained with SGD (``SGDSettings`` as keyword arguments).

    The settings are flat hyper-parameters, so ``load_from_checkpoint(path, backbone=...)`` rebuilds the module.
    """

    def __init__(self, backbone: torch.nn.Module, num_classes: int, channels_last: bool = True, **settings: Any):
        super().__init__()
        sgd = SGDSettings(**settings)
        self.save_hyperparameters({"num_classes": num_classes, "channels_last": channels_last,
                                   **dataclasses.asdict(sgd)})
        # create() hands over an eval-mode network: training mode for fine-tuning
        self.net = backbone.replace_head(num_classes, normalize=sgd.head_norm).train()
        if sgd.freeze_stages:
            self.net.freeze_stages(sgd.freeze_stages)
        self.test_scores: list[np.ndarray] = []
        self.test_rows: list[np.ndarray] = []

    def fit_head_norm(self) -> None:
        """A standardising head (``head_norm``) is fitted once on the training features before any step."""
        head = self.net.head
        if not isinstance(head, NormalizedHead) or bool(head.fitted):
            return
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            features = [
                self.net.penultimate(self.net.preprocess(images, device=self.device))
                for images, _, _ in self.trainer.datamodule.train_dataloader()
            ]
        head.fit(torch.cat(features).float())
        self.net.train(was_training)

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last on CUDA (faster convolutions with AMP), the default layout elsewhere."""
        cuda = self.device.type == "cuda" and self.hparams.get("channels_last", True)
        return torch.channels_last if cuda else torch.contiguous_format

    def on_fit_start(self) -> None:
        if self.memory_format == torch.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.fit_head_norm()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.net.preprocess(images, device=self.device, memory_format=self.memory_format))

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        images, targets, _ = batch
        logits = self(images)
        loss = F.cross_entropy(logits, targets)
        size = len(targets)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        self.log(f"{stage}/top1_error", top_k_error(logits, targets, 1), on_step=False, on_epoch=True, batch_size=size)
        if logits.shape[1] > 3:
            self.log(
                f"{stage}/top3_error", top_k_error(logits, targets, 3), on_step=False, on_epoch=True, batch_size=size
            )
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):  # a diverged step would poison every later one: stop here, saying where
            raise FloatingPointError(
                f"DTL1 diverged: training loss {float(loss)} at epoch {self.current_epoch}, batch {batch_idx}; "
                f"lower strategy.lr (now {self.hparams.lr}) or raise strategy.freeze_stages"
            )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_scores, self.test_rows = [], []

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")
        images, _, rows = batch
        self.test_scores.append(torch.softmax(self(images).float(), dim=1).cpu().numpy())
        self.test_rows.append(rows.cpu().numpy())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        groups = self.net.param_groups(hp.lr, hp.head_lr_mult)
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
        return torch.optim.SGD(
            [g for g in groups if g["params"]], lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )


class DTL1Predictor(Predictor):
    """A DTL1 run: the fine-tuned module of the checkpoint that was tested (``metrics.json`` ``checkpoint``),
    rebuilt with its saved hyper-parameters; ``model()`` is that FineTune module (eval). Its feature space is the
    penultimate layer (the input of the head), computed for the run's photos once (``features/dtl1_<role>.npz``)."""

    has_cnn = True

    def checkpoint(self) -> Path:
        """The checkpoint the run's test pass used (recorded in metrics.json, relative to the run dir)."""
        recorded = self.summary.get("checkpoint")
        if recorded:
            path = Path(recorded) if Path(recorded).is_absolute() else self.run_dir / recorded
        elif self.summary.get("best_checkpoint"):  # runs before `checkpoint` was recorded: absolute path
            old = Path(self.summary["best_checkpoint"])
            path = old if old.is_file() else self.run_dir / "checkpoints" / old.name
        else:
            raise FileNotFoundError(f"{self.run_dir}/metrics.json records no tested checkpoint")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the checkpoint this run tested is missing")
        return path

    def _load_model(self) -> FineTune:
        from facediag.models import create_from_config

        backbone = create_from_config(self.cfg.backbone, self.cfg.weights)
        module = FineTune.load_from_checkpoint(self.checkpoint(), map_location="cpu", weights_only=True,
                                               backbone=backbone)
        return module.eval()

    @torch.no_grad()
    def score_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = torch.softmax(self.model()(torch.from_numpy(crops)).float(), dim=1).numpy()
        return probabilities.astype(np.float64), probabilities.astype(np.float64)

    def features(self, crops: np.ndarray) -> np.ndarray:
        from facediag.models.features import extract_features

        return extract_features(self.torch_module(), crops, batch_size=self.batch_size, layer="penultimate")

    def torch_module(self) -> torch.nn.Module:
        return self.model().net

    def class_score_module(self) -> torch.nn.Module:
        return self.model().net.eval()

    def describe(self) -> Description:
        backbone, weights, s = str(self.cfg.backbone.name), str(self.cfg.weights.name), self.cfg.strategy
        model = (f"{backbone} pretrained on {weights}, fine-tuned with a new {len(self.classes)}-class head (DTL1: "
                 f"SGD lr {s.get('lr')}, momentum {s.get('momentum')}, weight decay {s.get('weight_decay')}, head lr "
                 f"x{s.get('head_lr_mult')}"
                 + (f", the first {s.get('freeze_stages')} stages frozen" if s.get("freeze_stages") else "")
                 + (", a standardising head" if s.get("head_norm") else "")
                 + f", batch {self.cfg.data.get('batch_size')}, at most {s.get('max_epochs')} epochs, early stopping "
                 f"on the validation loss with patience {s.get('patience')}, the best checkpoint tested)")
        return Description(self.name, f"{backbone} / {weights} / {self.name}", model, {"": self.crop}, backbone,
                           weights)


@register_strategy("dtl1", predictor=DTL1Predictor)
class DTL1:
    """Fine-tuning with early stopping on the validation split; tests the best checkpoint."""

    uses_backbone = True
    controls_by_default = False  # each control is another fine-tuning: only with controls_dtl1=true

    def __init__(
        self, name: str = "dtl1", max_epochs: int = 100, patience: int = 10, monitor: str = "val/loss", **settings: Any
    ):
        self.name = name
        self.sgd = SGDSettings(**settings)
        self.max_epochs, self.patience, self.monitor = max_epochs, patience, monitor

    def fit(self, job: Job) -> DTL1Predictor:
        faces = job.faces(job.backbone_crop)
        rows, crops = faces.rows, faces.crops
        if not (rows["role"] == "val").any():
            raise ValueError("DTL1 needs a validation part for early stopping: set data.val_size > 0")
        datamodule = FaceDataModule(
            rows, crops, job.classes, augment=build_augment(job.augment()), seed=job.seed, **job.loader_options
        )
        model = FineTune(job.make_backbone(), len(job.classes), **dataclasses.asdict(self.sgd))
        checkpoints = ModelCheckpoint(
            dirpath=job.out_dir / "checkpoints",
            filename="best",
            monitor=self.monitor,
            mode="min",
            save_last=True,
            save_top_k=1,
            auto_insert_metric_name=False,
        )
        stopping = EarlyStopping(monitor=self.monitor, mode="min", patience=self.patience)
        trainer = job.make_trainer(callbacks=[checkpoints, stopping], max_epochs=self.max_epochs)
        trainer.fit(
            model,
            datamodule=datamodule,
            ckpt_path=resolve_ckpt(job.cfg.get("ckpt_path"), job.out_dir),
            weights_only=True,
        )
        best, score, epochs, stopped_epoch = fit_outcome(checkpoints, stopping, trainer, job.out_dir)
        if best is None or score is None or not torch.isfinite(score):
            raise RuntimeError(
                f"DTL1 did not converge: best {self.monitor} = {score} after {epochs} epoch(s); "
                f"the loss diverged: lower strategy.lr (now {self.sgd.lr}) or raise strategy.freeze_stages"
            )
        log.info("DTL1: best checkpoint %s (%s=%s), %s epochs", best, self.monitor, float(score), epochs)
        # the test pass runs once, in this process, on one device (under ddp_spawn every rank would test a shard),
        # in full precision whatever the training precision (trainer=gpu: bf16-mixed), so predictions.csv holds
        # the scores that applying the run (facediag.apply.predict, evaluate.py run=) recomputes
        tester = job.make_trainer(
            devices=1, strategy="auto", num_nodes=1, enable_progress_bar=False, precision=FULL_PRECISION
        )
        tester.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
        # the best checkpoint's accuracy on the validation split: the validation score comparable across strategies
        (validated,) = tester.validate(model, datamodule=datamodule, verbose=False)
        job.info.update(
            checkpoint=checkpoint_in_run(best, job.out_dir),
            best_checkpoint=best,
            best_val_loss=float(score),
            val_score=-float(score),
            val_accuracy=1.0 - float(validated["val/top1_error"]),
            val_source=VAL_SOURCE,
            epochs=epochs,
            stopped_epoch=stopped_epoch,
        )
        order = np.concatenate(model.test_rows)
        predictor = DTL1Predictor.fitted(job, None, variant=self.name, checkpoint=job.info["checkpoint"])
        predictor.predictions = prediction_frame(rows.iloc[order], np.concatenate(model.test_scores), job.classes,
                                                 "dtl1")
        return predictor


def fit_outcome(
    checkpoints: ModelCheckpoint, stopping: EarlyStopping, trainer: pl.Trainer, out_dir: Path
) -> tuple[str | None, torch.Tensor | None, int, int]:
    """(best checkpoint, its monitored value, epochs run, early-stopping epoch) of a finished fit.

    Under ddp_spawn the ranks trained in other processes (this process only gets the best path back): the
    callbacks' state is read from last.ckpt.
    """
    if checkpoints.best_model_path and checkpoints.best_model_score is not None:
        return checkpoints.best_model_path, checkpoints.best_model_score, trainer.current_epoch, stopping.stopped_epoch
    last = out_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None, None, trainer.current_epoch, stopping.stopped_epoch
    state = torch.load(last, map_location="cpu", weights_only=True)
    saved = {name.split("{")[0]: value for name, value in state.get("callbacks", {}).items()}
    checkpoint_state = saved.get("ModelCheckpoint", {})
    return (
        checkpoint_state.get("best_model_path") or None,
        checkpoint_state.get("best_model_score"),
        int(state["epoch"]) + 1,
        int(saved.get("EarlyStopping", {}).get("stopped_epoch", 0)),
    )


def checkpoint_in_run(path: str, out_dir: Path) -> str:
    """The tested checkpoint relative to the run dir (what inference loads: best.ckpt or best-v1.ckpt, ...)."""
    checkpoint = Path(path).resolve()
    try:
        return checkpoint.relative_to(Path(out_dir).resolve()).as_posix()
    except ValueError:  # saved outside the run dir (a custom dirpath): keep the absolute path
        return str(checkpoint)


def resolve_ckpt(ckpt_path: str | None, out_dir: Path) -> str | None:
    """`last` → the run dir's checkpoints/last.ckpt (when it exists); otherwise the path as given."""
    if ckpt_path == "last":
        last = out_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    return ckpt_path
