"""Sweep tables choose the row to report on validation, never on test, and test every row against it.

Synthetic run dirs (tests/test_evaluate.write_fake_run) whose right answer is known: which person each run
gets right is set by hand, so the chosen row, the discordant people and the p-values follow by counting.
"""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from facediag.evaluation import evaluate_sweep
from facediag.evaluation.sweep import TRIAL_NOT_CHOSEN
from tests.test_evaluate import write_fake_run

OPTUNA_HYDRA = "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper\n"


def _person(rows: pd.DataFrame) -> np.ndarray:
    return rows["subject"].astype(int).to_numpy()


def half_right(rows: pd.DataFrame, variant: int) -> np.ndarray:
    """Both photos right for even-numbered people, both wrong for odd ones."""
    return _person(rows) % 2 == 0


def all_right(rows: pd.DataFrame, variant: int) -> np.ndarray:
    return np.ones(len(rows), dtype=bool)


def _rows_by_backbone(result) -> dict[str, object]:
    return {r.description["backbone"]: r for r in result.rows}


def _paper_run(root, name, backbone, val, correct, **kwargs):
    weights = "imagenet" if backbone != "dlib_resnet" else "dlib_faces"
    return write_fake_run(root / name, backbone=backbone, weights=weights, split="paper", n_people=60,
                          val_accuracy=val, correct=correct, **kwargs)


def test_the_row_with_the_best_validation_accuracy_is_chosen_even_when_another_is_better_on_test(tmp_path):
    root = tmp_path / "multirun"
    _paper_run(root, "0", "dlib_resnet", 0.90, half_right)  # best on validation, 50% on test
    _paper_run(root, "1", "efficientnet_lite0", 0.70, all_right)  # worse on validation, 100% on test
    _paper_run(root, "2", "resnet50", 0.80, half_right)  # the chosen row's twin

    result = evaluate_sweep(root, out_dir=tmp_path / "eval")

    rows = _rows_by_backbone(result)
    chosen, better, twin = rows["dlib_resnet"], rows["efficientnet_lite0"], rows["resnet50"]
    people = _person(chosen.predictions.drop_duplicates("subject"))
    odd = int((people % 2).sum())
    assert chosen.mark == "best" and chosen.metrics["accuracy"] == pytest.approx(1 - odd / len(people))
    # efficientnet is right on every odd person where the chosen row is wrong, never the other way round
    assert (better.comparison.n_units, better.comparison.n_a_better, better.comparison.n_b_better) == (
        len(people), odd, 0)
    assert better.comparison.p_value == pytest.approx(binomtest(0, odd, 0.5).pvalue)
    assert better.comparison.p_value < 0.01
    assert better.p_holm == pytest.approx(min(1.0, 2 * better.comparison.p_value))  # Holm over 2 rows
    assert better.comparison.accuracy_difference == pytest.approx(odd / len(people))
    assert better.comparison.difference_ci[0] > 0
    assert twin.comparison.p_value == 1.0 and twin.mark == "tie"
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert "better than chosen on test" in markdown and "not clearly different" in markdown
    assert "chosen by its validation accuracy" in markdown and "Chosen: dlib_resnet/dlib_faces/dtl2" in markdown


class _TableCells(HTMLParser):
    """The cells of every <table> of a page, per table: [caption, [[cell, ...] per row]]."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list] = []
        self.where: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append(["", []])
        elif tag == "caption":
            self.where = "caption"
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][1][-1].append("")
            self.where = "cell"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("caption", "td", "th"):
            self.where = None

    def handle_data(self, data: str) -> None:
        if self.where == "caption":
            self.tables[-1][0] += data
        elif self.where == "cell":
            self.tables[-1][1][-1][-1] += data


def test_the_comparison_csv_holds_the_html_tables_differences_p_values_and_chosen_row(tmp_path):
    from facediag.evaluation.report import fmt_interval, fmt_number
    from facediag.evaluation.sweep import fmt_p

    root = tmp_path / "multirun"
    _paper_run(root, "0", "dlib_resnet", 0.90, half_right)
    _paper_run(root, "1", "efficientnet_lite0", 0.70, all_right)
    _paper_run(root, "2", "resnet50", 0.80, half_right)
    result = evaluate_sweep(root, out_dir=tmp_path / "eval")

    csv = pd.read_csv(tmp_path / "eval" / "comparison_sex.csv")
    assert result.files["comparison_sex.csv"] == tmp_path / "eval" / "comparison_sex.csv"
    parser = _TableCells()
    parser.feed((tmp_path / "eval" / "report.html").read_text())
    header, *cells = next(rows for caption, rows in parser.tables if "test results" in caption)
    html = pd.DataFrame(cells, columns=header)
    assert len(html) == len(csv) == 3 and list(csv["chosen"]) == [note.startswith("★") for note in html["note"]]
    assert csv.loc[csv["chosen"], "backbone"].item() == "dlib_resnet"
    for (_, shown), (_, numbers) in zip(html.iterrows(), csv.iterrows(), strict=True):
        assert shown["backbone"] == numbers["backbone"] and shown["note"] == numbers["note"]
        assert shown["val accuracy"] == fmt_number(numbers["val_accuracy"])
        if numbers["chosen"]:
            assert shown["Δ accuracy vs chosen [95% CI]"] == "—" and pd.isna(numbers["mcnemar_p"])
            continue
        difference = (numbers["difference_vs_chosen"], numbers["difference_low"], numbers["difference_high"])
        assert shown["Δ accuracy vs chosen [95% CI]"] == fmt_interval(*difference)
        assert shown["McNemar p (Holm)"].startswith(
            f"{fmt_p(numbers['mcnemar_p'])} ({fmt_p(numbers['mcnemar_p_holm'])}); "
            f"{numbers['row_better']:.0f}:{numbers['chosen_better']:.0f} of {numbers['units']:.0f} people")
    better = csv.set_index("backbone").loc["efficientnet_lite0"]
    assert better["mcnemar_p_holm"] == pytest.approx(min(1.0, 2 * better["mcnemar_p"])) and better["difference_low"] > 0


def test_dsift_variants_are_chosen_on_their_own_validation_scores(tmp_path):
    root = tmp_path / "multirun"
    write_fake_run(root / "0", strategy="dsift", split="paper", quality=0.9,
                   val_accuracy={"svm_linear": 0.6, "svm_chi2": 0.8})

    result = evaluate_sweep(root)

    marks = {r.variant: r.mark for r in result.rows}
    assert marks["svm_chi2"] == "best" and marks["svm_linear"] != "best"
    assert {r.variant: r.val_accuracy for r in result.rows} == pytest.approx({"svm_linear": 0.6, "svm_chi2": 0.8})


def test_validation_losses_are_never_compared_with_accuracies_and_rows_without_one_are_not_eligible(tmp_path):
    root = tmp_path / "multirun"
    # DTL1's val_score is minus a loss (-0.5 here); its validation accuracy is what is compared
    write_fake_run(root / "0", strategy="dtl1", split="paper", val_accuracy=0.85)
    write_fake_run(root / "1", backbone="efficientnet_lite0", weights="imagenet", split="paper", val_accuracy=0.80)
    write_fake_run(root / "2", backbone="resnet50", weights="imagenet", split="paper", quality=0.99,
                   val_accuracy=None)

    result = evaluate_sweep(root, out_dir=tmp_path / "eval")

    marks = {(r.description["backbone"], r.description["strategy"]): r for r in result.rows}
    assert marks[("dlib_resnet", "dtl1")].mark == "best"
    unvalidated = marks[("resnet50", "dtl2")]
    assert unvalidated.mark != "best" and unvalidated.val_accuracy is None
    assert "no validation accuracy: not eligible" in (tmp_path / "eval" / "report.md").read_text()


def test_optuna_trials_show_one_test_score_for_the_trial_chosen_on_val_score(tmp_path):
    root = tmp_path / "multirun"
    for trial, (c, val, quality) in enumerate([(0.01, 0.70, 0.95), (1.0, 0.90, 0.60), (100.0, 0.80, 0.90)]):
        write_fake_run(root / str(trial), split="paper", quality=quality, val_accuracy=val,
                       extra={"strategy.C_grid": [c]}, hydra_yaml=OPTUNA_HYDRA)

    result = evaluate_sweep(root, out_dir=tmp_path / "eval")

    (row,) = result.rows
    assert row.setting == "strategy.C_grid=[1.0]" and len(row.trials) == 3 and row.mark == "best"
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert "best val_score of 3 Optuna trials" in markdown
    trials = markdown.split("Optuna trials (validation only")[1].split("\n\n")[1]
    assert "accuracy [95% CI]" not in trials and trials.count("★") == 1
    assert markdown.count(f"{row.metrics['accuracy']:.3f} [") == 1  # one test score: the chosen trial's
    table = pd.read_csv(tmp_path / "eval" / "report.csv").set_index("run_dir")
    chosen = str(row.entries[0].path)
    assert table["accuracy"].notna().sum() == 1 and table.loc[chosen, "accuracy"] == row.metrics["accuracy"]
    others = table.drop(index=chosen)
    assert others[["n_test", "accuracy", "accuracy_lo", "auc"]].isna().all().all()
    assert (others["reason"] == TRIAL_NOT_CHOSEN).all() and others["val_score"].notna().all()


def test_methods_on_shuffled_labels_look_like_noise(tmp_path):
    root = tmp_path / "multirun"
    rng = np.random.default_rng(0)
    coin = {backbone: rng.random(200) < 0.5 for backbone in ("dlib_resnet", "efficientnet_lite0")}
    for name, backbone in enumerate(coin):
        _paper_run(root, str(name), backbone, 0.5 + 0.01 * name,
                   lambda rows, v, b=backbone: coin[b][_person(rows)])

    result = evaluate_sweep(root)

    rows = _rows_by_backbone(result)
    chosen, other = rows["efficientnet_lite0"], rows["dlib_resnet"]
    assert chosen.mark == "best" and other.mark == "tie" and other.p_holm >= 0.05
    low, high = chosen.metrics["accuracy_ci"]
    assert low < 0.5 < high
    assert other.comparison.difference_ci[0] < 0 < other.comparison.difference_ci[1]


@pytest.mark.slow
def test_evaluate_py_sweep_prints_the_table_with_the_chosen_row_and_paired_p_values(tmp_path):
    from pathlib import Path

    from tests.conftest import run_python

    root = tmp_path / "multirun"
    _paper_run(root, "0", "dlib_resnet", 0.90, half_right)
    _paper_run(root, "1", "efficientnet_lite0", 0.70, all_right)
    repo = Path(__file__).resolve().parents[1]

    done = run_python(str(repo / "evaluate.py"), "sweep=multirun", "hydra.run.dir=eval", cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "★ chosen on validation" in done.stdout and "better than chosen on test" in done.stdout
    assert "McNemar p (Holm)" in done.stdout and "person bootstrap" in done.stdout
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "eval" / "comparison_sex.csv").is_file()
