"""Every experiment preset, launcher and trainer config composes into the sweep it promises (no job runs).

The DSF presets must ask for weight files that are not on this machine, and say which and where to put
them, before any job starts; the London presets must need none.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from facediag.core.config import CONFIG_DIR
from facediag.training import multirun
from facediag.training.config import register_configs
from facediag.training.multirun import MissingWeightsError, check_weights, method_pair, missing_weight_files
from tests.conftest import run_python

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
DSF_TABLES = ["paper_table3", "paper_table4", "paper_table5", "paper_table6"]
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The folder every composed config points its output, cache and DSF data into (nothing is written)."""
    return tmp_path_factory.mktemp("presets")


@pytest.fixture(autouse=True, scope="module")
def each_job_config_composed_once():
    """The weight check composes every job's `train` config (``multirun.compose_train``); here each distinct
    one is composed once for the module (read-only, so no test can change another's)."""
    original = multirun.compose_train

    @functools.cache
    def composed(overrides: tuple[str, ...]) -> DictConfig:
        cfg = original(list(overrides))
        OmegaConf.set_readonly(cfg, True)
        return cfg

    multirun.compose_train = lambda overrides: composed(tuple(overrides))
    yield
    multirun.compose_train = original


@functools.cache
def compose_hydra(tmp_path: Path, *overrides: str) -> DictConfig:
    """The `train` config with its `hydra` node, as `python train.py ... --cfg all` would print it (composed once
    per distinct call, read-only)."""
    register_configs()
    base = [
        f"paths.output_dir={tmp_path}/run",
        f"paths.cache_dir={tmp_path}/cache",
        f"data.root={tmp_path}/dsf",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, *base], return_hydra_config=True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def sweep_jobs(cfg: DictConfig) -> list[dict[str, str]]:
    """The jobs a BasicSweeper launches for this config: one {key: value} dict per job."""
    params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.get("params") or {}).items()]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    return [dict(item.split("=", 1) for item in job) for job in batches[0]]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes_into_a_multirun(experiment, root):
    cfg = compose_hydra(root, f"experiment={experiment}")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params, f"{experiment} sweeps nothing"
    OmegaConf.to_container(cfg, resolve=False)  # every node is well formed
    assert cfg.hydra.callbacks.check_weights._target_ == "facediag.training.multirun.CheckWeights"


@pytest.mark.parametrize(
    ("experiment", "strategies", "n_jobs"),
    [
        ("paper_table3", {"dtl1", "dsift"}, 5),
        ("paper_table4", {"dtl2"}, 4),
        ("paper_table5", {"dtl1", "dtl2", "dsift"}, 9),
        ("paper_table6", {"dtl2"}, 4),
        ("london_table", {"dtl1", "dtl2", "dtl2_fused", "dsift"}, 14),
    ],
)
def test_table_presets_sweep_the_rows_of_their_table(experiment, strategies, n_jobs, root):
    cfg = compose_hydra(root, f"experiment={experiment}")
    jobs = sweep_jobs(cfg)
    methods = {job["method"].strip() for job in jobs}
    assert len(jobs) == n_jobs and len(methods) == len({job["method"] for job in jobs})
    used = {(method_pair(m) or ("", "", "dsift"))[2] for m in methods}
    assert used == strategies
    expected_data = "london" if experiment.startswith("london") else "dsf"
    assert cfg.data.name == expected_data
    if expected_data == "dsf":
        assert cfg.data.task == ("binary" if experiment in ("paper_table3", "paper_table4") else "multiclass")


@pytest.mark.slow
def test_each_method_row_selects_its_backbone_weights_and_strategy(root):
    methods = {
        job["method"].strip()
        for experiment in [*DSF_TABLES, "london_table"]
        for job in sweep_jobs(compose_hydra(root, f"experiment={experiment}"))
    }
    for method in sorted(methods):
        cfg = compose_hydra(root, f"method={method}")
        pair = method_pair(method)
        if pair is None:
            assert cfg.strategy.name == "dsift", method
        else:
            assert (cfg.backbone.name, cfg.weights.name, cfg.strategy.name) == pair, method


def test_london_cv_sweeps_five_person_folds_times_two_split_seeds(root):
    cfg = compose_hydra(root, "experiment=london_cv")
    jobs = sweep_jobs(cfg)
    assert {(job["data.fold"], job["data.split_seed"]) for job in jobs} == {
        (str(f), str(s)) for f in range(5) for s in (0, 1)
    }
    assert len(jobs) == 10 and cfg.data.n_folds == 5 and cfg.data.task == "sex"
    assert (cfg.backbone.name, cfg.weights.name, cfg.strategy.name) == ("dlib_resnet", "dlib_faces", "dtl2")


@pytest.mark.parametrize("experiment", DSF_TABLES)
def test_dsf_presets_list_every_missing_weight_file_and_where_to_put_it(experiment, root):
    cfg = compose_hydra(root, f"experiment={experiment}")
    cnn_methods = {m for job in sweep_jobs(cfg) if method_pair(m := job["method"].strip())}
    pairs = {method_pair(m)[:2] for m in cnn_methods}
    with pytest.raises(MissingWeightsError) as raised:
        check_weights(cfg)
    message = str(raised.value)
    assert f"{len(pairs)} weight file(s)" in message
    for backbone, weights in pairs:
        assert f"{backbone} x {weights}: " in message
    assert message.count(f"put it in {root}/cache/weights/") == len(pairs)


@pytest.mark.parametrize(
    "experiment", ["london_table", "london_cv", "optuna_dtl2_C", "optuna_dtl1_lr", "london_learning_curve"]
)
def test_london_presets_need_no_weight_file_beyond_the_installed_packages(experiment, root):
    assert missing_weight_files(compose_hydra(root, f"experiment={experiment}")) == []


@pytest.mark.parametrize(
    ("experiment", "param"), [("optuna_dtl2_C", "svm_C"), ("optuna_dtl1_lr", "strategy.lr")]
)
def test_optuna_presets_maximise_a_validation_score_never_a_test_metric(experiment, param, root):
    cfg = compose_hydra(root, f"experiment={experiment}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == OPTUNA and sweeper.direction == "maximize"
    assert cfg.optimized_metric.startswith("val")
    assert list(sweeper.params) == [param] and "interval" in sweeper.params[param]
    assert sweeper.sampler.seed == cfg.seed


def test_optuna_dtl2_trial_c_is_the_single_cross_validated_c(root):
    cfg = compose_hydra(root, "experiment=optuna_dtl2_C", "svm_C=0.125")
    assert OmegaConf.to_container(cfg.strategy, resolve=True)["C_grid"] == [0.125]


def test_submitit_slurm_launcher_composes_from_the_command_line():
    out = run_python("train.py", "experiment=paper_table4", "data.root=/nonexistent", "hydra/launcher=submitit_slurm",
                     "hydra.launcher.partition=gpu", "--cfg", "hydra")
    assert out.returncode == 0, out.stderr
    launcher = OmegaConf.create(out.stdout).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher") and launcher.partition == "gpu"
    assert OmegaConf.to_container(launcher)["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


def test_slurm_gpu_preset_asks_one_gpu_per_job(root):
    launcher = compose_hydra(root, "experiment=london_table", "hydra/launcher=slurm_gpu").hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)


def test_joblib_launcher_composes_with_a_job_count(root):
    launcher = compose_hydra(root, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert launcher._target_.endswith("joblib_launcher.JoblibLauncher") and launcher.n_jobs == 2


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        ("gpu", {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"}),
        ("ddp", {"accelerator": "gpu", "devices": -1, "strategy": "ddp_spawn", "precision": "bf16-mixed"}),
    ],
)
def test_gpu_and_ddp_trainers_compose_with_mixed_precision(trainer, expected, root):
    cfg = compose_hydra(root, f"trainer={trainer}", "experiment=london_table")
    assert {key: cfg.trainer[key] for key in expected} == expected
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_london_learning_curve_sweeps_training_people_per_class_on_fixed_folds(root):
    cfg = compose_hydra(root, "experiment=london_learning_curve")
    jobs = sweep_jobs(cfg)
    assert {job["data.train_subjects_per_class"] for job in jobs} == {"5", "10", "20", "null"}
    assert {job["data.task"] for job in jobs} == {"sex", "expression", "sex_expression"}
    assert {job["data.split_seed"] for job in jobs} == {"0", "1"} and cfg.data.n_folds == 5
    methods = {job["method"].strip() for job in jobs}  # 840 jobs, 7 methods: each composed once
    strategies = {(method_pair(method) or ("", "", "dsift"))[2] for method in methods}
    assert strategies == {"dsift", "dtl2", "dtl2_fused", "dtl1"}
    assert len(jobs) == 3 * 7 * 4 * 2 * 5
    # the option subsamples the training part only (the data stage reads it; null = every person)
    assert compose_hydra(root).data.train_subjects_per_class is None


def test_fused_method_lists_both_sources_and_the_weight_check_covers_them(root):
    from facediag.training.multirun import needed_pairs

    cfg = compose_hydra(root, "method=dlib_resnet_efficientnet_lite0_dtl2_fused")
    assert cfg.strategy.name == "dtl2_fused" and cfg.strategy._target_ == "facediag.strategies.fused.FusedDTL2"
    sources = {(s.backbone, s.weights) for s in cfg.strategy.sources}
    assert sources == {("dlib_resnet", "dlib_faces"), ("efficientnet_lite0", "imagenet")}
    assert (cfg.backbone.name, cfg.weights.name) == ("dlib_resnet", "dlib_faces")
    assert needed_pairs(compose_hydra(root, "experiment=london_table")) >= sources


def test_a_landmark_source_needs_no_weight_file_and_the_weight_check_lists_the_cnn_sources(root):
    from facediag.training.multirun import config_pairs

    cfg = compose_hydra(root, "method=dlib_resnet_efficientnet_lite0_geometry_dtl2_fused")
    assert any("features" in s for s in cfg.strategy.sources)
    assert config_pairs(cfg) == {("dlib_resnet", "dlib_faces"), ("efficientnet_lite0", "imagenet")}
    assert missing_weight_files(cfg, config_pairs(cfg)) == []


def test_geometry_fused_method_adds_a_landmark_source_and_needs_no_weight_file_for_it(root):
    from facediag.training.multirun import needed_pairs

    cfg = compose_hydra(root, "method=dlib_resnet_efficientnet_lite0_geometry_dtl2_fused")
    assert [dict(s) for s in cfg.strategy.sources][2] == {"features": "face_geometry"}
    assert cfg.strategy.select_sources is False  # the choice on held-out training people (benchmarks/fused.py designs)
    assert needed_pairs(compose_hydra(root, "experiment=london_table")) == {
        ("dlib_resnet", "dlib_faces"), ("efficientnet_lite0", "imagenet")}


def test_stages_flip_fused_method_takes_efficientnets_mid_level_stages_flip_averaged(root):
    from facediag.training.multirun import config_pairs, needed_pairs

    cfg = compose_hydra(root, "method=dlib_resnet_efficientnet_lite0_stages_flip_dtl2_fused")
    assert [dict(s) for s in cfg.strategy.sources] == [
        {"backbone": "dlib_resnet", "weights": "dlib_faces", "flip": True},
        {"backbone": "efficientnet_lite0", "weights": "imagenet", "feature_layer": "stages", "flip": True}]
    assert missing_weight_files(cfg, config_pairs(cfg)) == []
    assert needed_pairs(compose_hydra(root, "experiment=london_table")) == config_pairs(cfg)


def test_efficientnet_dtl1_cpu_preset_fine_tunes_with_config_augmentation(root):
    from hydra.utils import instantiate

    cfg = compose_hydra(root, "method=efficientnet_lite0_imagenet_dtl1_cpu")
    assert (cfg.backbone.name, cfg.weights.name, cfg.strategy.name) == ("efficientnet_lite0", "imagenet", "dtl1")
    assert cfg.strategy.freeze_stages > 0 and cfg.strategy.head_lr_mult > 1 and cfg.strategy.max_epochs <= 15
    transforms = [instantiate(t) for t in cfg.data.augment]
    assert [type(t).__name__ for t in transforms] == ["HorizontalFlip", "Affine", "RandomBrightnessContrast"]


def test_flip_fused_method_flip_averages_both_cnn_sources(root):
    from facediag.training.multirun import config_pairs

    cfg = compose_hydra(root, "method=dlib_resnet_efficientnet_lite0_flip_dtl2_fused")
    assert [dict(s) for s in cfg.strategy.sources] == [
        {"backbone": "dlib_resnet", "weights": "dlib_faces", "flip": True},
        {"backbone": "efficientnet_lite0", "weights": "imagenet", "flip": True}]
    assert config_pairs(cfg) == {("dlib_resnet", "dlib_faces"), ("efficientnet_lite0", "imagenet")}
    assert missing_weight_files(cfg, config_pairs(cfg)) == []
