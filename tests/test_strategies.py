"""Each strategy end to end on a tiny subset of the London faces (real faces, real weights)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from facediag.apply.trained_run import TrainedRun
from facediag.training.train import RUN_CONFIG, train
from tests.conftest import TINY, compose_train
from tests.faces_cache import faces_only_cache

pytestmark = pytest.mark.slow


def run(tmp_path, shared_cache, *overrides):
    cfg = compose_train(tmp_path, *TINY, *overrides, cache_dir=shared_cache)
    return train(cfg), cfg


def test_dtl2_writes_the_run_dir_contract_a_cache_hit_skips_the_cnn_and_the_same_seed_gives_the_same_run(
    london_dir, tmp_path, shared_cache, tiny_dtl2_run
):
    own_cache = faces_only_cache(shared_cache, tmp_path / "cache")  # no features yet: no other run has filled it
    summary, _ = run(tmp_path / "a", own_cache, "strategy=dtl2", "controls=[]")  # controls: tiny_dtl2_run
    for name in (
        "manifest.csv",
        "split.csv",
        "predictions.csv",
        "metrics.json",
        "confusion_matrix.png",
        "svm_arrays.npz",
        "features/train.npz",
        "features/test.npz",
        "qa_grid.png",
        "preprocess_report.csv",
    ):
        assert (tmp_path / "a" / name).is_file(), name
    predictions = pd.read_csv(tmp_path / "a" / "predictions.csv")
    assert list(predictions.columns) == [
        "path",
        "subject",
        "label",
        "pred",
        "role",
        "variant",
        "score_female",
        "score_male",
    ]
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["n_test"] == len(predictions) and 0 <= metrics["accuracy_ci"][0] <= metrics["accuracy"]
    rerun, _ = run(tmp_path / "b", own_cache, "strategy=dtl2", "strategy.C_grid=[1.0]", "controls=[]")
    assert summary["cnn_images"] > 0 and rerun["cnn_images"] == 0
    for role in ("train", "test"):  # the warm run reads the same features without a predict pass
        cold, warm = (np.load(tmp_path / name / "features" / f"{role}.npz") for name in ("a", "b"))
        np.testing.assert_array_equal(cold["features"], warm["features"])
        assert list(cold["paths"]) == list(warm["paths"])
    # the warm run has tiny_dtl2_run's settings (that one trained through train.py, on the session's cache): the
    # same seed gives the same split and the same metrics
    first, second = (json.loads((run_dir / "metrics.json").read_text()) for run_dir in (tiny_dtl2_run, tmp_path / "b"))
    pd.testing.assert_frame_equal(pd.read_csv(tiny_dtl2_run / "split.csv"), pd.read_csv(tmp_path / "b" / "split.csv"))
    assert first["accuracy"] == second["accuracy"] and first["confusion_matrix"] == second["confusion_matrix"]


def test_dsift_reports_a_linear_and_a_chi2_row(tiny_dsift_run):
    summary = json.loads((tiny_dsift_run / "metrics.json").read_text())
    assert set(summary["variants"]) == {"svm_linear", "svm_chi2"}
    predictions = pd.read_csv(tiny_dsift_run / "predictions.csv")
    assert set(predictions["variant"]) == {"svm_linear", "svm_chi2"}
    assert summary["macs"] is None and summary["backbone"] is None
    # each variant is selected on its own grouped-CV accuracy (the top level is the first variant's)
    for variant in summary["variants"].values():
        assert 0.0 <= variant["val_accuracy"] == variant["val_score"] <= 1.0 and variant["svm_C"] == 1.0
    assert summary["val_score"] == summary["variants"]["svm_linear"]["val_score"]


def test_dtl1_tests_the_best_checkpoint_not_the_last_weights(london_dir, tmp_path, shared_cache):
    summary, _ = run(
        tmp_path,
        shared_cache,
        "strategy=dtl1",
        "strategy.max_epochs=4",
        "strategy.patience=4",
        "strategy.lr=0.005",  # high enough to move the weights a lot, finite (a NaN loss stops the run)
        "data.batch_size=8",
    )
    best, last = tmp_path / "checkpoints" / "best.ckpt", tmp_path / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file() and summary["best_checkpoint"] == str(best)
    # the validation accuracy (comparable across strategies) is the best checkpoint's, beside minus its loss
    assert 0.0 <= summary["val_accuracy"] <= 1.0 and summary["val_score"] == -summary["best_val_loss"]
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    # re-score the test images from the best checkpoint alone: the saved scores must be reproduced
    scored = TrainedRun(tmp_path).score(list(predictions["path"]))
    assert scored.paths == list(predictions["path"])
    np.testing.assert_allclose(scored.probabilities, predictions[["score_female", "score_male"]].to_numpy(), atol=1e-4)
    best_ckpt, last_ckpt = torch.load(best, weights_only=True), torch.load(last, weights_only=True)
    if best_ckpt["epoch"] != last_ckpt["epoch"]:
        state = best_ckpt["state_dict"]
        assert any(not torch.equal(last_ckpt["state_dict"][k], state[k]) for k in state)


def test_a_run_with_a_standardising_head_is_scored_again_from_its_checkpoint(tiny_dtl1_head_norm_run):
    # the CPU preset fine-tunes with head_norm: the head's layers differ from the default, so re-scoring must
    # rebuild the module from the checkpoint's own settings
    predictions = pd.read_csv(tiny_dtl1_head_norm_run / "predictions.csv")
    scored = TrainedRun(tiny_dtl1_head_norm_run).score(list(predictions["path"]))
    np.testing.assert_allclose(scored.probabilities, predictions[["score_female", "score_male"]].to_numpy(), atol=1e-4)


def test_tensorboard_events_hold_scalars_hparams_and_images(london_dir, tmp_path, shared_cache):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tmp_path, shared_cache, "strategy=dtl2", "strategy.C_grid=[1.0]", "logger=tensorboard")
    events = sorted((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and {e.parent.name for e in events} == {"dlib_resnet-dlib_faces-dtl2_sex_fold0_seed42"}
    scalars, images, plugins = set(), set(), set()
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        tags = accumulator.Tags()
        scalars |= set(tags["scalars"])
        images |= set(tags["images"])
        try:
            plugins |= set(accumulator.PluginTagToContent("hparams"))
        except KeyError:  # this event file holds no hparams summary
            pass
    assert "test/accuracy/dtl2" in scalars and "hp/accuracy" in scalars
    assert {"confusion_matrix/dtl2", "qa/aligned_faces"} <= images
    assert "_hparams_/session_start_info" in plugins


def test_dtl1_resumes_an_interrupted_run_from_its_last_checkpoint(london_dir, tmp_path, shared_cache):
    people = "data.max_subjects_per_class=4"  # resuming needs no more photos
    run(tmp_path, shared_cache, people, "strategy=dtl1", "strategy.max_epochs=1", "data.batch_size=8")
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 0
    bias = next(k for k in checkpoint["state_dict"] if k.endswith("fc.bias"))
    checkpoint["state_dict"][bias].fill_(7.0)  # a mark that only a resumed run can carry on from
    torch.save(checkpoint, last)
    (tmp_path / "metrics.json").unlink()  # as if the job had been killed before it finished
    resumed, _ = run(
        tmp_path, shared_cache, people, "strategy=dtl1", "strategy.max_epochs=2", "data.batch_size=8", "ckpt_path=last"
    )
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == 1 and resumed["epochs"] == 2
    assert torch.allclose(final["state_dict"][bias], torch.full_like(final["state_dict"][bias], 7.0), atol=0.05)


def test_dtl1_on_two_ddp_ranks_tests_every_image_once_in_the_main_process(london_dir, tmp_path, shared_cache):
    summary, _ = run(
        tmp_path,
        shared_cache,
        "data.max_subjects_per_class=4",  # the ranks' start-up is the cost; fewer photos suffice to shard
        "strategy=dtl1",
        "strategy.max_epochs=1",
        "data.batch_size=8",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.sync_batchnorm=false",
    )
    split = pd.read_csv(tmp_path / "split.csv")
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert sorted(predictions["path"]) == sorted(split.loc[split.role == "test", "path"])
    assert summary["n"] == summary["n_test"] == len(predictions)
    assert summary["best_checkpoint"] == str(tmp_path / "checkpoints" / "best.ckpt")


def test_a_dtl2_svm_the_arrays_cannot_reproduce_is_saved_with_skops_and_applied_from_there(
    london_dir, tmp_path, shared_cache, monkeypatch
):
    import facediag.strategies.dtl2 as dtl2
    from facediag.classifiers.linear_svm import ARRAYS_FILE, SVM_FILE, SVM_PLATT_FILE

    monkeypatch.setattr(dtl2, "export", lambda *args: False)  # as export does when the check fails
    run(tmp_path, shared_cache, "strategy=dtl2", "strategy.C_grid=[1.0]")
    assert (tmp_path / SVM_FILE).is_file() and (tmp_path / SVM_PLATT_FILE).is_file()
    assert not (tmp_path / ARRAYS_FILE).exists()
    own = pd.read_csv(tmp_path / "predictions.csv").set_index("path")
    scored = TrainedRun(tmp_path).score(list(own.index))
    assert scored.paths == list(own.index)
    np.testing.assert_allclose(scored.scores, own[["score_female", "score_male"]].to_numpy(), atol=1e-5)


def test_a_run_trained_in_bf16_mixed_keeps_full_precision_test_scores_and_features(
    london_dir, tmp_path, shared_cache, tiny_dtl2_run
):
    # trainer=gpu trains in bf16-mixed; CPU autocast runs the same precision plugin here (emulated without AVX-512:
    # two training steps of four photos)
    run(tmp_path / "dtl1", shared_cache, "data.max_subjects_per_class=4", "strategy=dtl1", "strategy.max_epochs=1",
        "data.batch_size=4", "+trainer.limit_train_batches=2", "trainer.precision=bf16-mixed")
    own = pd.read_csv(tmp_path / "dtl1" / "predictions.csv").set_index("path")
    scored = TrainedRun(tmp_path / "dtl1").score(list(own.index))
    np.testing.assert_allclose(scored.scores, own[["score_female", "score_male"]].to_numpy(), atol=1e-4)
    # a cache without features: the CNN runs in bf16-mixed; tiny_dtl2_run's features are the 32-true CNN's (the
    # trainer's default precision, as the shared cache holds them); no controls (their features are not compared)
    cache = faces_only_cache(shared_cache, tmp_path / "cache_bf16")
    run(tmp_path / "bf16", cache, "strategy=dtl2", "strategy.C_grid=[1.0]", "controls=[]",
        "trainer.precision=bf16-mixed")
    assert OmegaConf.load(tiny_dtl2_run / RUN_CONFIG).trainer.precision == "32-true"
    bf16, full = (np.load(run_dir / "features" / "test.npz") for run_dir in (tmp_path / "bf16", tiny_dtl2_run))
    assert list(bf16["paths"]) == list(full["paths"])
    np.testing.assert_allclose(bf16["features"], full["features"], atol=1e-4)
