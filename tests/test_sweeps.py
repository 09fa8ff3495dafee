"""Robust sweeps: missing weights stop a multirun before any job; a failing job spares the others;
a rerun skips complete jobs; joblib runs jobs in parallel into one sweep dir; sweepers see validation only.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from facediag.training.multirun import completed_summary, optimized_value
from facediag.training.train import FAILED, RUN_CONFIG
from tests.conftest import TINY, run_python

TINY_DTL2 = [*TINY, "strategy=dtl2", "strategy.C_grid=[1.0]", "num_threads=1", "controls=[]"]  # controls: test_controls


def train_py(*args: str, fresh: bool = False) -> tuple[subprocess.CompletedProcess, float]:
    """`python train.py <args>` (its own run id; ``fresh``: in a new process tree); the result and its wall time."""
    started = time.perf_counter()
    out = run_python("train.py", *args, fresh=fresh)
    return out, time.perf_counter() - started


# --- fast: pure functions ----------------------------------------------------------------------------


def test_optimized_value_returns_the_validation_score_as_a_float():
    assert optimized_value({"val_score": 0.75, "accuracy": 0.5}, "val_score") == 0.75
    assert optimized_value({"accuracy": 0.5}, None) is None


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "auc", "test_accuracy"])
def test_optimized_value_refuses_a_test_metric(metric):
    with pytest.raises(ValueError, match="not a validation metric"):
        optimized_value({metric: 0.9, "val_score": 0.7}, metric)


def test_optimized_value_names_a_validation_score_the_run_did_not_compute():
    with pytest.raises(ValueError, match="val_score.*missing"):
        optimized_value({"val_score": None, "accuracy": 0.9}, "val_score")


def write_complete_run(run_dir: Path, config: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_CONFIG).write_text(config)
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "val_score": 0.75}))


def test_completed_summary_returns_stored_metrics_only_for_the_same_config(tmp_path):
    config = OmegaConf.to_yaml(OmegaConf.create({"strategy": {"C_grid": [1.0]}, "seed": 42}))
    write_complete_run(tmp_path, config)
    assert completed_summary(tmp_path, config) == {"accuracy": 0.5, "val_score": 0.75}
    other = config.replace("42", "43")
    assert completed_summary(tmp_path, other) is None
    reordered = OmegaConf.to_yaml(OmegaConf.create({"seed": 42, "strategy": {"C_grid": [1.0]}}))
    assert completed_summary(tmp_path, reordered) == {"accuracy": 0.5, "val_score": 0.75}


def test_completed_summary_reruns_a_failed_or_unfinished_job(tmp_path):
    config = "seed: 42\n"
    write_complete_run(tmp_path / "failed", config)
    (tmp_path / "failed" / FAILED).write_text("Traceback ...\nValueError: boom")
    assert completed_summary(tmp_path / "failed", config) is None
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / RUN_CONFIG).write_text(config)
    assert completed_summary(tmp_path / "unfinished", config) is None


# --- slow: real multiruns in subprocesses ----------------------------------------------------------


@pytest.mark.slow
def test_a_single_run_with_missing_weights_stops_before_it_starts_and_names_its_fused_sources(tmp_path):
    out, _ = train_py(
        "strategy=dtl2_fused", "strategy.sources=[{backbone: vgg16, weights: vggface}]",
        f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run",
    )
    assert out.returncode != 0 and "MissingWeightsError: 1 weight file(s)" in out.stderr
    assert f"vgg16 x vggface: vgg_face_dag.pth -> put it in {tmp_path}/cache/weights/" in out.stderr
    assert not (tmp_path / "run" / "manifest.csv").exists()


@pytest.mark.slow
def test_missing_weights_stop_a_multirun_before_any_job_starts(tmp_path):
    sweep_dir = tmp_path / "sweep"
    out, _ = train_py(
        "experiment=paper_table5", f"data.root={tmp_path}/dsf", f"paths.cache_dir={tmp_path}/cache",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert out.returncode != 0
    assert "MissingWeightsError: 4 weight file(s)" in out.stderr
    files = ("alexnet-owt-7be5be79.pth", "resnet50-0676ba61.pth", "vgg16-397923af.pth", "vgg_face_dag.pth")
    for name in files:
        assert f"{name} -> put it in {tmp_path}/cache/weights/" in out.stderr
    assert "Launching" not in out.stdout + out.stderr and not sweep_dir.exists()


def stop_joblib_workers() -> None:
    """Ends the joblib (loky) worker processes this process keeps for reuse: the next joblib launch starts new
    ones, which take the environment (the run id) of that moment, as the workers of a new process tree do."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)  # the one loky keeps for reuse, if any
    if executor is not None:
        executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory, shared_cache, london_dir):
    """A 2-job joblib multirun (sex: fine; task 'bogus': fails) with the default sweep-dir pattern, run as a new
    process would (its own run id) in this interpreter; the joblib launcher starts worker processes that must
    inherit that run id."""
    log_dir = tmp_path_factory.mktemp("outputs")
    command = [
        *TINY_DTL2,
        f"paths.cache_dir={shared_cache}",
        f"paths.log_dir={log_dir}",
        "data.task=sex,bogus",
    ]
    stop_joblib_workers()  # workers kept from an earlier launch would carry an earlier environment
    try:
        out, seconds = train_py("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *command)
    finally:
        stop_joblib_workers()  # nor may this launch's workers (and its run id) serve a later one
    sweep_dirs = sorted(log_dir.glob("multiruns/*/*"))
    return {"out": out, "seconds": seconds, "sweep_dirs": sweep_dirs, "command": command}


@pytest.mark.slow
def test_joblib_jobs_of_one_multirun_land_in_one_sweep_dir(joblib_sweep):
    sweep_dirs = joblib_sweep["sweep_dirs"]
    assert len(sweep_dirs) == 1, f"one multirun, several sweep dirs (run id not inherited?): {sweep_dirs}"
    assert sorted(p.name for p in sweep_dirs[0].iterdir() if p.is_dir()) == ["0", "1"]
    launcher = OmegaConf.load(sweep_dirs[0] / "multirun.yaml").hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2
    for job in ("0", "1"):
        hydra_cfg = OmegaConf.load(sweep_dirs[0] / job / ".hydra" / "hydra.yaml").hydra
        assert Path(hydra_cfg.runtime.output_dir) == sweep_dirs[0] / job


@pytest.mark.slow
def test_a_failing_job_is_recorded_in_its_run_dir_and_spares_the_other(joblib_sweep):
    out, sweep_dir = joblib_sweep["out"], joblib_sweep["sweep_dirs"][0]
    assert out.returncode != 0, "a sweep with a failed job must not exit 0"
    failure = (sweep_dir / "1" / FAILED).read_text()
    assert "bogus" in failure and not (sweep_dir / "1" / "metrics.json").exists()
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert metrics["task"] == "sex" and metrics["n_test"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0
    assert not (sweep_dir / "0" / FAILED).exists()


@pytest.mark.slow
def test_rerunning_a_sweep_skips_complete_jobs_and_retries_failed_ones(joblib_sweep):
    sweep_dir = joblib_sweep["sweep_dirs"][0]
    done = [sweep_dir / "0" / name for name in ("metrics.json", "predictions.csv", "svm_arrays.npz")]
    stamps = [path.stat().st_mtime_ns for path in done]
    (sweep_dir / "1" / FAILED).unlink()
    out, _ = train_py("-m", *joblib_sweep["command"], f"hydra.sweep.dir={sweep_dir}")  # basic launcher
    assert f"skipped: {sweep_dir / '0'} already holds complete results" in out.stdout
    assert "DTL2 SVM" not in out.stdout + out.stderr, "the complete job trained again"
    assert [path.stat().st_mtime_ns for path in done] == stamps
    assert (sweep_dir / "1" / FAILED).is_file() and out.returncode != 0
