"""evaluate.py recomputes a run's metrics from its run dir; folds pool correctly; subgroups are counted right.

Fake run dirs follow the run-dir contract (docs/architecture.md) exactly: .hydra/config.yaml composed
from the real config group files, manifest.csv, split.csv, predictions.csv, metrics.json.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from facediag.evaluation import (
    FoldPredictions,
    RunDirError,
    configuration_key,
    evaluate_run,
    find_run_dirs,
    load_run,
    pool_folds,
    subgroup_table,
)
from facediag.evaluation.figures import roc_curves
from facediag.scoring.metrics import classification_metrics, wilson_interval
from facediag.scoring.results import DISCLAIMER, summarize
from facediag.scoring.stats import PERSON_LEVEL_METHODS
from tests.conftest import run_python

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SEX_CLASSES = ("female", "male")
DSIFT_VARIANTS = ("svm_linear", "svm_chi2")


# -- fake run dirs (also used by tests/test_report.py) -----------------------------------------------------
def _people(n_people: int) -> pd.DataFrame:
    """A London-like manifest: ``n_people`` × neutral/smiling, with sex, age, ethnicity, expression."""
    rows = []
    ethnicities = ["white", "east_asian", "black", "west_asian"]
    for p in range(n_people):
        sex = SEX_CLASSES[p % 2]
        for expression, code in (("neutral", "03"), ("smiling", "08")):
            rows.append(
                {
                    "path": f"/data/london-faces/{expression}/{p:03d}_{code}.jpg",
                    "label": sex,
                    "subject": f"{p:03d}",
                    "sha256": hashlib.sha256(f"{p}{expression}".encode()).hexdigest(),
                    "width": 1350,
                    "height": 1350,
                    "status": "ok",
                    "sex": sex,
                    "age": float(18 + (p * 7) % 30),
                    "ethnicity": ethnicities[p % len(ethnicities)],
                    "expression": expression,
                }
            )
    return pd.DataFrame(rows)


def _config(backbone: str, weights: str, strategy: str, task: str, fold: int, split_seed: int, split: str,
            n_folds: int, extra: dict | None = None) -> dict:
    """The composed train config built from the real group files (as Hydra writes .hydra/config.yaml)."""
    def group(name: str, option: str) -> dict:
        path = CONF / name / f"{option}.yaml"
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else {"name": option}

    data = group("data", "london")
    data.update(task=task, fold=fold, split_seed=split_seed, split=split, n_folds=n_folds)
    config = {
        "task_name": "train", "prepare_only": False, "seed": 42, "ckpt_path": None, "num_threads": None,
        "paths": group("paths", "default"), "data": data, "backbone": group("backbone", backbone),
        "weights": group("weights", weights), "strategy": group("strategy", strategy),
    }
    for dotted, value in (extra or {}).items():
        node = config
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return config


def _fold_of(subjects: pd.Series, n_folds: int, split_seed: int) -> np.ndarray:
    people = sorted(set(subjects))
    order = np.random.default_rng(split_seed).permutation(len(people))
    fold_of_person = {people[i]: rank % n_folds for rank, i in enumerate(order)}
    return subjects.map(fold_of_person).to_numpy()


def _scores(labels: Sequence[int], correct: np.ndarray, n_classes: int, kind: str, rng: np.random.Generator):
    """Per-class scores whose argmax is the label where ``correct``, another class elsewhere."""
    labels = np.asarray(labels)
    predicted = np.where(correct, labels, (labels + 1 + rng.integers(0, n_classes - 1, len(labels))) % n_classes)
    if kind == "svm" and n_classes == 2:
        margin = rng.uniform(0.1, 2.0, len(labels)) * np.where(predicted == 1, 1.0, -1.0)
        return np.column_stack([-margin, margin])
    logits = rng.normal(0.0, 1.0, (len(labels), n_classes))
    logits[np.arange(len(labels)), predicted] = logits.max(axis=1) + rng.uniform(0.1, 2.0, len(labels))
    if kind == "svm":
        return logits
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def write_fake_run(
    run_dir: Path,
    *,
    backbone: str = "dlib_resnet",
    weights: str = "dlib_faces",
    strategy: str = "dtl2",
    task: str = "sex",
    fold: int = 0,
    split_seed: int = 0,
    n_folds: int = 3,
    split: str = "kfold",
    n_people: int = 24,
    quality: float = 0.8,
    failed: str | None = None,
    extra: dict | None = None,
    val_accuracy: float | dict[str, float] | None | str = "quality",
    correct: Callable[[pd.DataFrame, int], np.ndarray] | None = None,
    hydra_yaml: str | None = None,
) -> Path:
    """A training run dir per the contract; test accuracy ≈ ``quality``. ``failed``: write FAILED instead.

    ``val_accuracy``: the validation accuracy metrics.json records (default: ``quality``, minus 0.1 per DSIFT
    variant as the test accuracy; a dict: per variant; None: none recorded). ``correct(rows, variant_index)``:
    which scored rows are right (overrides ``quality``). ``hydra_yaml``: the text of .hydra/hydra.yaml (e.g.
    an Optuna sweeper's).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    config = _config(backbone, weights, strategy, task, fold, split_seed, split, n_folds, extra)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    if hydra_yaml is not None:
        (run_dir / ".hydra" / "hydra.yaml").write_text(hydra_yaml)
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        f"- backbone={backbone}\n- strategy={strategy}\n- data.fold={fold}\n- data.split_seed={split_seed}\n")
    manifest = _people(n_people)
    if task == "sex_expression":
        manifest["label"] = manifest["sex"] + "_" + manifest["expression"]
        classes = ["female_neutral", "female_smiling", "male_neutral", "male_smiling"]
    else:
        classes = list(SEX_CLASSES)
    manifest.to_csv(run_dir / "manifest.csv", index=False)
    split_frame = manifest[["path", "subject", "label"]].copy()
    folds = _fold_of(split_frame["subject"], n_folds, split_seed)
    split_frame["role"] = np.where(folds == fold, "test", np.where(folds == (fold + 1) % n_folds, "val", "train"))
    split_frame["fold"] = folds
    split_frame["sha256"] = manifest["sha256"]
    split_frame.to_csv(run_dir / "split.csv", index=False)
    if failed is not None:
        (run_dir / "FAILED").write_text(failed)
        return run_dir

    variants = DSIFT_VARIANTS if strategy == "dsift" else (strategy,)
    kind = "softmax" if strategy == "dtl1" else "svm"
    scored = split_frame[split_frame["role"].isin(["test", "val"])].sample(frac=1.0, random_state=fold)
    index = {c: i for i, c in enumerate(classes)}
    labels = scored["label"].map(index).to_numpy()
    frames = []
    for v, variant in enumerate(variants):
        seed = int(hashlib.sha256(f"{backbone}{strategy}{variant}{fold}{split_seed}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        correct_rows = rng.random(len(labels)) < quality - 0.1 * v if correct is None else correct(scored, v)
        scores = _scores(labels, correct_rows, len(classes), kind, rng)
        frame = scored[["path", "subject", "label"]].reset_index(drop=True)
        frame["pred"] = [classes[i] for i in scores.argmax(axis=1)]
        frame["role"] = scored["role"].to_numpy()
        frame["variant"] = variant
        frames.append(pd.concat([frame, pd.DataFrame(scores, columns=[f"score_{c}" for c in classes])], axis=1))
    predictions = pd.concat(frames, ignore_index=True)
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    # metrics.json as training writes it: reload the csv (floats round-trip) and summarise the test rows
    predictions = pd.read_csv(run_dir / "predictions.csv")
    roles = split_frame["role"].value_counts()
    cnn = strategy != "dsift"
    info = {
        "task": task, "dataset": "london", "classes": classes, "positive": classes[-1] if len(classes) == 2 else None,
        "backbone": backbone if cnn else None, "weights": weights if cnn else None, "strategy": strategy,
        "n_train": int(roles["train"]), "n_val": int(roles["val"]), "n_test": int(roles["test"]), "n_skipped": 0,
        "fold": fold if split == "kfold" else None, "split_seed": split_seed,
        "macs": {"dlib_resnet": 1_100_000_000, "efficientnet_lite0": 400_000_000}.get(backbone) if cnn else None,
        "params": 5_600_000 if cnn else None, "wall_time_s": 12.5,
    }
    if val_accuracy is not None:
        if isinstance(val_accuracy, dict):
            per_variant = {variant: float(val_accuracy[variant]) for variant in variants}
        else:
            val = quality if val_accuracy == "quality" else float(val_accuracy)
            per_variant = {variant: val - 0.1 * v for v, variant in enumerate(variants)}
        info["variant_info"] = {variant: {"val_accuracy": val, "val_source": "fake",
                                          "val_score": -0.5 if strategy == "dtl1" else val}
                                for variant, val in per_variant.items()}
    summary = summarize(predictions[predictions["role"] == "test"], classes, info["positive"], info)
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return run_dir


def hand_accuracy(run_dir: Path, variant: str) -> float:
    """Test accuracy counted directly from predictions.csv: argmax of the score columns == label."""
    frame = pd.read_csv(run_dir / "predictions.csv")
    frame = frame[(frame["variant"] == variant) & (frame["role"] == "test")]
    columns = [c for c in frame.columns if c.startswith("score_")]
    predicted = np.array([c[len("score_"):] for c in columns])[frame[columns].to_numpy().argmax(axis=1)]
    return float((predicted == frame["label"].to_numpy()).mean())


# -- evaluate one run ---------------------------------------------------------------------------------------
def test_evaluate_run_recomputes_metrics_equal_to_the_stored_and_hand_counted_accuracy(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", strategy="dsift", split="paper")
    stored = json.loads((run_dir / "metrics.json").read_text())

    summary = evaluate_run(run_dir)

    assert list(summary["variants"]) == list(DSIFT_VARIANTS)
    for variant in DSIFT_VARIANTS:
        recomputed = summary["variants"][variant]
        assert recomputed["accuracy"] == stored["variants"][variant]["accuracy"]
        assert recomputed["accuracy"] == hand_accuracy(run_dir, variant)
        assert recomputed["n"] == (pd.read_csv(run_dir / "split.csv")["role"] == "test").sum()
    assert set(stored) <= set(summary)  # every key of the training run's metrics.json
    assert summary["strategy"] == "dsift" and summary["backbone"] is None


def test_evaluate_run_uses_only_the_test_role_and_ignores_stored_performance_numbers(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", quality=0.7)
    stored = json.loads((run_dir / "metrics.json").read_text())
    stored["accuracy"] = stored["variants"]["dtl2"]["accuracy"] = 0.123  # a tampered stored number
    (run_dir / "metrics.json").write_text(json.dumps(stored))

    summary = evaluate_run(run_dir)

    assert summary["accuracy"] == hand_accuracy(run_dir, "dtl2") != 0.123
    assert summary["macs"] == 1_100_000_000  # config-derived keys are copied


def test_evaluate_run_takes_predictions_made_elsewhere(tmp_path):
    run_dir = write_fake_run(tmp_path / "run")
    external = pd.DataFrame({"path": ["/x/a.jpg", "/x/b.jpg", "/x/c.jpg", "/x/d.jpg"],
                             "subject": ["a", "b", "c", "d"], "label": ["female", "male", "male", "female"],
                             "pred": ["female", "male", "female", "female"], "role": "test", "variant": "dtl2",
                             "score_female": [1.0, -1.0, 0.5, 2.0], "score_male": [-1.0, 1.0, -0.5, -2.0]})

    summary = evaluate_run(run_dir, predictions_df=external)

    assert summary["n"] == 4 and summary["accuracy"] == 0.75
    assert summary["accuracy_ci"] == pytest.approx(list(wilson_interval(3, 4)))


def test_evaluate_run_rejects_predictions_with_unknown_classes_naming_the_file(tmp_path):
    run_dir = write_fake_run(tmp_path / "run")
    frame = pd.read_csv(run_dir / "predictions.csv")
    frame.loc[0, "label"] = "alien"
    frame.to_csv(run_dir / "predictions.csv", index=False)

    with pytest.raises(RunDirError, match=r"predictions\.csv.*alien"):
        evaluate_run(run_dir)


def test_evaluate_run_refuses_a_failed_run_with_its_reason(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", failed="Traceback ...\nRuntimeError: CUDA out of memory\n")
    with pytest.raises(RunDirError, match="CUDA out of memory"):
        evaluate_run(run_dir)


def test_evaluate_run_writes_metrics_reports_figures_and_subgroups(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", strategy="dtl1", backbone="efficientnet_lite0", weights="imagenet")
    out = tmp_path / "eval"

    summary = evaluate_run(run_dir, out_dir=out)

    assert json.loads((out / "metrics.json").read_text())["accuracy"] == summary["accuracy"]
    markdown = (out / "report.md").read_text()
    assert DISCLAIMER in markdown.split("\n")[2]  # right under the title
    assert "reproduced for every variant" in markdown
    assert (out / "figures" / "confusion_matrix_dtl1.png").stat().st_size > 0
    assert (out / "figures" / "roc_dtl1.png").stat().st_size > 0
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2 and DISCLAIMER in html
    subgroups = pd.read_csv(out / "subgroups.csv")
    assert set(subgroups["attribute"]) == {"sex", "age", "ethnicity", "expression"}
    # age binned with the config's data.age_bands; every test image counted once per attribute
    bands = OmegaConf.load(CONF / "data" / "london.yaml").age_bands
    assert set(subgroups.loc[subgroups["attribute"] == "age", "group"]) <= {f"{lo}-{hi}" for lo, hi in bands}
    assert (subgroups.groupby("attribute")["n"].sum() == summary["n"]).all()


def test_evaluate_run_of_a_multiclass_task_draws_one_vs_rest_curves(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", task="sex_expression", strategy="dtl1", split="paper")

    summary = evaluate_run(run_dir, out_dir=tmp_path / "eval")

    assert len(summary["classes"]) == 4 and summary["top3_error"] is not None  # defined for C > 3
    assert (tmp_path / "eval" / "figures" / "roc_dtl1.png").stat().st_size > 0
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert "ROC (one vs rest)" in markdown and "top-3 error" in markdown


@pytest.mark.slow
def test_evaluate_py_cli_reproduces_the_runs_accuracy_exactly(tmp_path):
    run_dir = write_fake_run(tmp_path / "run", quality=0.85)
    stored = json.loads((run_dir / "metrics.json").read_text())
    out = tmp_path / "eval"

    done = run_python(str(REPO / "evaluate.py"), f"run={run_dir}", f"hydra.run.dir={out}", cwd=tmp_path, fresh=True)

    assert done.returncode == 0, done.stderr[-2000:]
    recomputed = json.loads((out / "metrics.json").read_text())
    assert recomputed["accuracy"] == stored["accuracy"] == hand_accuracy(run_dir, "dtl2")
    assert (out / "report.html").is_file() and DISCLAIMER in done.stdout


def test_evaluate_py_needs_exactly_one_of_run_and_sweep(tmp_path):
    from facediag.evaluation.cli import evaluate

    with pytest.raises(ValueError, match="exactly one"):
        evaluate(run=None, sweep=None, out_dir=tmp_path)


# -- run discovery --------------------------------------------------------------------------------------------
def test_find_run_dirs_searches_recursively_and_skips_evaluation_outputs(tmp_path):
    write_fake_run(tmp_path / "multirun" / "0", fold=0)
    write_fake_run(tmp_path / "multirun" / "1", fold=1, failed="ValueError: boom")
    evaluation = tmp_path / "multirun" / "eval"
    (evaluation / ".hydra").mkdir(parents=True)
    (evaluation / ".hydra" / "config.yaml").write_text("task_name: evaluate\nrun: null\n")
    (evaluation / "predictions.csv").write_text("path,label\n")

    found = find_run_dirs(tmp_path / "multirun")

    assert [p.name for p in found] == ["0", "1"]
    assert find_run_dirs(str(tmp_path / "multirun" / "[01]")) == found
    with pytest.raises(FileNotFoundError, match="no run dirs"):
        find_run_dirs(tmp_path / "multirun" / "eval")


# -- cross-validation pooling -------------------------------------------------------------------------------
def _fold_frame(paths: Sequence[str], labels: Sequence[int], predicted: Sequence[int]) -> pd.DataFrame:
    scores = np.eye(2)[np.asarray(predicted)]
    return pd.DataFrame({"path": list(paths), "label": [SEX_CLASSES[i] for i in labels],
                         "score_female": scores[:, 0], "score_male": scores[:, 1]})


def _synthetic_cv() -> list[FoldPredictions]:
    """12 images (6 per class), 3 folds × 2 repeats. Correct: seed 0 → 10/12, seed 1 → 8/12."""
    paths = [f"img{i:02d}" for i in range(12)]
    labels = [0] * 6 + [1] * 6
    folds = []
    wrong = {0: {1, 7}, 1: {0, 2, 8, 9}}  # misclassified image indices per repeat
    for seed in (0, 1):
        order = np.random.default_rng(seed).permutation(12)
        for fold in range(3):
            members = sorted(order[fold * 4:(fold + 1) * 4])
            predicted = [1 - labels[i] if i in wrong[seed] else labels[i] for i in members]
            folds.append(FoldPredictions(fold, seed, _fold_frame([paths[i] for i in members],
                                                                 [labels[i] for i in members], predicted),
                                         f"seed{seed}/fold{fold}"))
    return folds


def test_pool_folds_gives_pooled_wilson_intervals_per_repeat_and_mean_sd_over_repeats():
    folds = _synthetic_cv()

    cv = pool_folds(folds, SEX_CLASSES, positive="male")

    repeats = cv.repeats.set_index("split_seed")
    assert repeats.loc[0, "n"] == repeats.loc[1, "n"] == 12
    assert list(repeats["n_correct"]) == [10, 8]
    for seed, correct in ((0, 10), (1, 8)):
        assert (repeats.loc[seed, "accuracy_lo"], repeats.loc[seed, "accuracy_hi"]) == pytest.approx(
            wilson_interval(correct, 12))
    assert cv.mean_accuracy == pytest.approx(9 / 12)
    assert cv.sd_accuracy == pytest.approx(np.std([10 / 12, 8 / 12], ddof=1))
    assert cv.summary["n"] == 12 and cv.summary["n_repeats"] == 2 and cv.summary["n_folds"] == 3
    assert cv.summary["accuracy_ci"] == pytest.approx(list(wilson_interval(9, 12)))


def test_pool_folds_averages_row_normalised_confusion_matrices_over_folds():
    folds = _synthetic_cv()
    expected = []
    for fold in folds:
        y = fold.predictions["label"].map({"female": 0, "male": 1}).to_numpy()
        cm = np.array(classification_metrics(y, fold.predictions[["score_female", "score_male"]].to_numpy(),
                                             SEX_CLASSES)["confusion_matrix"], dtype=float)
        with np.errstate(invalid="ignore"):
            expected.append(cm / cm.sum(axis=1, keepdims=True))

    cv = pool_folds(folds, SEX_CLASSES)

    np.testing.assert_allclose(cv.mean_confusion, np.nanmean(np.stack(expected), axis=0))
    np.testing.assert_allclose(cv.mean_confusion.sum(axis=1), 1.0)


def test_pool_folds_with_one_repeat_reports_that_repeats_exact_interval():
    folds = [f for f in _synthetic_cv() if f.split_seed == 1]
    cv = pool_folds(folds, SEX_CLASSES)
    assert cv.sd_accuracy is None
    assert cv.summary["accuracy"] == pytest.approx(8 / 12)
    assert cv.summary["accuracy_ci"] == pytest.approx(list(wilson_interval(8, 12)))


def test_pool_folds_rejects_an_image_tested_twice_within_a_repeat():
    folds = _synthetic_cv()
    leaked = FoldPredictions(0, 0, pd.concat([folds[0].predictions, folds[1].predictions.head(1)]), "seed0/fold0")
    with pytest.raises(ValueError, match="several folds"):
        pool_folds([leaked, *folds[1:3]], SEX_CLASSES)
    with pytest.raises(ValueError, match="appears twice"):
        pool_folds([folds[0], folds[0]], SEX_CLASSES)


def test_pool_folds_rejects_a_person_tested_in_two_folds_and_resamples_whole_people():
    folds = [f for f in _synthetic_cv() if f.split_seed == 0]
    with_people = [FoldPredictions(f.fold, 0, f.predictions.assign(subject=f.predictions["path"].str[-1]), f.source)
                   for f in folds]  # img01 and img11 are one person ("1"), in different folds here
    split_people = {f.fold: set(f.predictions["subject"]) for f in with_people}
    if all(len(a & b) == 0 for i, a in split_people.items() for j, b in split_people.items() if i < j):
        pytest.skip("this permutation keeps every person in one fold")
    with pytest.raises(ValueError, match="person .* several folds"):
        pool_folds(with_people, SEX_CLASSES)

    grouped = [FoldPredictions(f.fold, 0, f.predictions.assign(subject=f"person{f.fold}"), f.source) for f in folds]
    cv = pool_folds(grouped, SEX_CLASSES, positive="male")
    # 3 people: the Wilson floor at 3 people sets the bounds (facediag.scoring.stats)
    assert cv.summary["accuracy_ci_method"] in PERSON_LEVEL_METHODS
    assert cv.summary["n_people"] == 3


def test_configuration_key_ignores_fold_seed_and_paths_but_not_settings(tmp_path):
    a = load_run(write_fake_run(tmp_path / "a", fold=0, split_seed=0)).config
    b = load_run(write_fake_run(tmp_path / "b", fold=2, split_seed=1)).config
    c = load_run(write_fake_run(tmp_path / "c", extra={"strategy.cv_folds": 3})).config
    d = load_run(write_fake_run(tmp_path / "d", extra={"seed": 7})).config  # another training seed
    b["paths"]["log_dir"] = "/elsewhere"
    assert configuration_key(a) == configuration_key(b)
    assert configuration_key(a) != configuration_key(c)
    assert configuration_key(a) != configuration_key(d)


# -- subgroups ------------------------------------------------------------------------------------------------
def test_subgroup_table_counts_and_intervals_per_metadata_group():
    predictions = _fold_frame([f"p{i}" for i in range(8)], [0, 0, 0, 1, 1, 1, 1, 0], [0, 1, 0, 1, 1, 0, 1, 0])
    manifest = pd.DataFrame({
        "path": [f"p{i}" for i in range(8)], "label": None, "subject": None, "sha256": None, "width": 1,
        "height": 1, "status": "ok",
        "ethnicity": ["a", "a", "b", "b", "a", "b", "a", None],
        "age": [19.0, 25.0, 30.0, 40.0, 22.0, 19.0, 60.0, 31.0],
    })

    table = subgroup_table(predictions, manifest, SEX_CLASSES, "male", {"age": [[18, 21], [22, 33], [34, 50]]})

    eth = table[table["attribute"] == "ethnicity"].set_index("group")
    # correct: p0 p2 p3 p4 p6 p7; wrong: p1 p5
    assert eth.loc["a", "n"] == 4 and eth.loc["a", "n_correct"] == 3
    assert eth.loc["b", "n"] == 3 and eth.loc["b", "n_correct"] == 2
    assert eth.loc["unknown", "n"] == 1
    assert eth.loc["a", "n_per_class"] == "female 2, male 2"
    assert (eth.loc["a", "accuracy_lo"], eth.loc["a", "accuracy_hi"]) == pytest.approx(wilson_interval(3, 4))
    assert eth.loc["a", "sensitivity"] == pytest.approx(2 / 2) and eth.loc["a", "specificity"] == pytest.approx(1 / 2)
    # every rate with an interval (one image per person: Wilson for the proportions), small cells flagged
    assert (eth.loc["a", "specificity_lo"], eth.loc["a", "specificity_hi"]) == pytest.approx(wilson_interval(1, 2))
    assert eth.loc["a", "ci_method"] == "wilson" and eth.loc["a", "people"] == 4
    assert {"auc_lo", "auc_hi", "sensitivity_lo"} <= set(table.columns)
    assert table["small_n"].all()  # every cell has fewer than 10 images
    age = table[table["attribute"] == "age"].set_index("group")
    assert list(age.index) == ["18-21", "22-33", "34-50", "other"]
    assert list(age["n"]) == [2, 4, 1, 1]


def test_subgroup_table_bins_numeric_metadata_in_quartiles_without_bands():
    ages = np.arange(20.0, 60.0, 2.5)  # 16 distinct values
    predictions = _fold_frame([f"p{i}" for i in range(16)], [0, 1] * 8, [0, 1] * 8)
    manifest = pd.DataFrame({"path": [f"p{i}" for i in range(16)], "age": ages})
    table = subgroup_table(predictions, manifest, SEX_CLASSES)
    assert list(table["n"]) == [4, 4, 4, 4]
    assert table["group"].iloc[0] == "20-27.5" and table["group"].iloc[-1] == "50-57.5"


def test_subgroup_table_is_empty_without_metadata():
    predictions = _fold_frame(["p0", "p1"], [0, 1], [0, 1])
    manifest = pd.DataFrame({"path": ["p0", "p1"], "label": ["female", "male"], "subject": ["0", "1"],
                             "sha256": None, "width": 1, "height": 1, "status": "ok"})
    assert subgroup_table(predictions, manifest, SEX_CLASSES).empty


# -- ROC curves agree with the metrics module's AUC -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_roc_curve_areas_equal_classification_metrics_auc(kind, n_classes):
    rng = np.random.default_rng(n_classes)
    labels = np.arange(40) % n_classes
    scores = _scores(labels, rng.random(40) < 0.7, n_classes, kind, rng)
    scores += rng.normal(0, 0.3, scores.shape) if kind == "svm" else 0.0
    classes = [f"c{i}" for i in range(n_classes)]

    curves = roc_curves(labels, scores, classes)
    metrics = classification_metrics(labels, scores, classes)

    if n_classes == 2:
        assert len(curves) == 1 and curves[0].auc == pytest.approx(metrics["auc"])
    else:
        assert [c.auc for c in curves] == pytest.approx([metrics["per_class"][c]["auc"] for c in classes])


def test_a_run_s_subjects_are_read_as_written_so_its_people_are_resampled_as_in_training(tmp_path):
    from facediag.evaluation.runs import load_run
    from facediag.scoring.results import metrics_for

    run_dir = write_fake_run(tmp_path / "run")  # subjects 000-023
    run = load_run(run_dir)
    assert set(run.predictions["subject"]) <= {f"{p:03d}" for p in range(24)}
    assert set(run.split["subject"]) == {f"{p:03d}" for p in range(24)}
    as_trained = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str})
    for key in ("accuracy_ci", "balanced_accuracy_ci", "auc_ci"):
        assert metrics_for(run.predictions, run.classes, run.positive)[key] == \
            metrics_for(as_trained, run.classes, run.positive)[key]


def test_class_folders_named_like_numbers_keep_their_names_when_a_run_is_evaluated_again(tmp_path):
    from facediag.evaluation import evaluate_run

    run_dir = write_fake_run(tmp_path / "run")
    names = {"female": "0", "male": "01"}  # folders 0 and 01: read as numbers they were 0 and 1
    for csv in ("predictions.csv", "split.csv", "manifest.csv"):
        frame = pd.read_csv(run_dir / csv, dtype=str)
        frame["label"] = frame["label"].map(names)
        if "pred" in frame:
            frame["pred"] = frame["pred"].map(names)
        frame.rename(columns={f"score_{old}": f"score_{new}" for old, new in names.items()}).to_csv(
            run_dir / csv, index=False)
    stored = json.loads((run_dir / "metrics.json").read_text())
    stored["classes"], stored["positive"] = ["0", "01"], "01"
    (run_dir / "metrics.json").write_text(json.dumps(stored))
    again = evaluate_run(run_dir)
    assert again["classes"] == ["0", "01"] and again["accuracy"] == stored["accuracy"]
