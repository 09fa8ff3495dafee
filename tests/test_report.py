"""The sweep report: paper-layout table with intervals, best row, CV pooling, failed runs; HTML in a browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facediag.evaluation import evaluate_sweep
from facediag.evaluation.report import MISSING, Report, fmt_count, fmt_interval, fmt_number
from facediag.evaluation.sweep import SweepResult
from facediag.scoring.results import DISCLAIMER
from facediag.scoring.stats import PERSON_LEVEL_METHODS
from tests.test_evaluate import DSIFT_VARIANTS, hand_accuracy, write_fake_run

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def evaluated_sweep(tmp_path_factory) -> tuple[SweepResult, Path]:
    """A multirun: dlib_resnet DTL2 3-fold CV (good), efficientnet DTL2 3-fold with fold 2 FAILED (poor),
    DSIFT on one paper split (two variants); evaluated once for the module into ``<tmp>/eval`` (the tests only
    read it): the result and that folder."""
    tmp_path = tmp_path_factory.mktemp("report")
    root = tmp_path / "multirun"
    job = 0
    for fold in range(3):
        write_fake_run(root / str(job), fold=fold, quality=0.95)
        job += 1
    for fold in range(3):
        failed = "Traceback (most recent call last):\n  ...\nRuntimeError: out of memory\n" if fold == 2 else None
        write_fake_run(root / str(job), backbone="efficientnet_lite0", weights="imagenet", fold=fold, quality=0.35,
                       failed=failed)
        job += 1
    write_fake_run(root / str(job), strategy="dsift", split="paper", quality=0.75)
    return evaluate_sweep(root, out_dir=tmp_path / "eval"), tmp_path / "eval"


def test_sweep_report_csv_has_one_row_per_run_and_variant_with_failures(evaluated_sweep):
    result, evaluation = evaluated_sweep

    csv = pd.read_csv(evaluation / "report.csv")
    assert len(csv) == 3 + 3 + len(DSIFT_VARIANTS)
    failed = csv[csv["status"] == "failed"]
    assert len(failed) == 1 and failed["reason"].iloc[0] == "RuntimeError: out of memory"
    assert failed["run_dir"].iloc[0].endswith("multirun/5")
    ok = csv[csv["status"] == "ok"]
    for _, row in ok.iterrows():
        assert row["accuracy"] == hand_accuracy(Path(row["run_dir"]), row["variant"])
        # two photos per person: person-level intervals (tests/test_stats.py checks their width)
        assert row["accuracy_ci_method"] in PERSON_LEVEL_METHODS
        assert row["accuracy_lo"] <= row["accuracy"] <= row["accuracy_hi"]
    assert result.files["html"].is_file() and result.files["md"].is_file()


def test_sweep_table_pools_cv_folds_marks_the_best_row_and_flags_overlapping_intervals(evaluated_sweep):
    result, evaluation = evaluated_sweep

    rows = {(r.description["backbone"], r.variant, r.status): r for r in result.rows}
    assert len(result.rows) == 5  # 2 pooled CV rows, 2 DSIFT variants, 1 failed run
    dlib = rows[("dlib_resnet", "dtl2", "ok")]
    assert dlib.cv is not None and dlib.metrics["n"] == 48  # every image once, out of fold
    csv = pd.read_csv(evaluation / "report.csv")
    dlib_runs = csv[(csv["backbone"] == "dlib_resnet")]
    assert dlib.metrics["accuracy"] == pytest.approx(dlib_runs["n_correct"].sum() / dlib_runs["n_test"].sum())
    effnet = rows[("efficientnet_lite0", "dtl2", "ok")]
    assert "1 failed run left out" in effnet.evaluation and effnet.cv.summary["n_folds"] == 2
    assert rows[("efficientnet_lite0", None, "failed")].reason == "RuntimeError: out of memory"

    ok = [r for r in result.rows if not r.failed]
    chosen = max(ok, key=lambda r: r.val_accuracy)  # the fixture's validation accuracies follow its quality
    assert chosen is dlib and chosen.mark == "best" and [r.mark for r in ok].count("best") == 1
    for row in ok:
        if row is not chosen:
            assert row.comparison is not None and row.n_paired > 0
            assert (row.mark == "tie") == (row.p_holm >= 0.05)
    assert effnet.mark == "" and effnet.p_holm < 0.05  # 35% vs 95%: clearly different
    assert effnet.comparison.accuracy_difference < 0 and effnet.comparison.difference_ci[1] < 0

    markdown = (evaluation / "report.md").read_text()
    assert DISCLAIMER in markdown.split("\n")[2]
    assert "★ chosen on validation" in markdown and "FAILED: RuntimeError: out of memory" in markdown
    assert "worse than chosen" in markdown and "Methods (generated)." in markdown
    for column in ("MACs", "val accuracy", "accuracy [95% CI]", "precision", "sensitivity [95% CI]",
                   "specificity [95% CI]", "F1", "AUC [95% CI]", "Δ accuracy vs chosen [95% CI]", "McNemar p (Holm)"):
        assert f" {column} |" in markdown
    assert "1.1 G" in markdown  # dlib_resnet's MACs
    assert "## Cross-validation" in markdown and "± " not in markdown.split("## Cross-validation")[0]
    cv = pd.read_csv(evaluation / "cv.csv")
    assert set(zip(cv["backbone"], cv["n_folds"], strict=True)) == {("dlib_resnet", 3), ("efficientnet_lite0", 2)}


def test_sweep_pools_repeats_with_mean_and_sd(tmp_path):
    root = tmp_path / "multirun"
    for job, (seed, fold) in enumerate([(s, f) for s in (0, 1) for f in range(3)]):
        write_fake_run(root / str(job), fold=fold, split_seed=seed, quality=0.8)

    result = evaluate_sweep(root, out_dir=tmp_path / "eval")

    (row,) = result.rows
    csv = pd.read_csv(tmp_path / "eval" / "report.csv")
    per_seed = csv.groupby("split_seed").apply(lambda g: g["n_correct"].sum() / g["n_test"].sum(),
                                                include_groups=False)
    assert row.metrics["accuracy"] == pytest.approx(per_seed.mean())
    assert row.metrics["accuracy_sd"] == pytest.approx(per_seed.std(ddof=1))
    assert "3-fold CV × 2 repeats" in row.evaluation
    # the interval of the mean over repeats resamples whole people (the same people in both repeats)
    assert row.metrics["accuracy_ci_method"] in PERSON_LEVEL_METHODS
    assert row.metrics["accuracy_ci"][0] < row.metrics["accuracy"] < row.metrics["accuracy_ci"][1]
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert "SD over repeats" in markdown and "(mean ± SD)" in markdown


def test_sweep_of_a_multiclass_task_shows_per_class_accuracy(tmp_path):
    root = tmp_path / "multirun"
    write_fake_run(root / "0", task="sex_expression", strategy="dtl1", split="paper")
    write_fake_run(root / "1", task="sex_expression", backbone="efficientnet_lite0", weights="imagenet",
                   split="paper")

    evaluate_sweep(root, out_dir=tmp_path / "eval")

    markdown = (tmp_path / "eval" / "report.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| backbone"))
    for name in ("female_neutral", "female_smiling", "male_neutral", "male_smiling"):
        assert f"accuracy {name}" in header
    assert "sensitivity" not in header
    assert "macro one vs rest" in markdown


def test_sweep_separates_lookalike_configurations_by_their_differing_setting(tmp_path):
    root = tmp_path / "multirun"
    write_fake_run(root / "0", split="paper", extra={"strategy.standardize": True})
    write_fake_run(root / "1", split="paper", extra={"strategy.standardize": False})

    result = evaluate_sweep(root)

    assert sorted(r.setting for r in result.rows) == ["strategy.standardize=False", "strategy.standardize=True"]


def test_fused_runs_named_by_their_sources_need_no_setting_to_tell_them_apart(tmp_path):
    root = tmp_path / "multirun"
    for i, kind in enumerate(["face_geometry", "face_anthropometry"]):
        sources = [{"backbone": "dlib_resnet", "weights": "dlib_faces"}, {"features": kind}]
        # as a fused preset composes: backbone=dlib_resnet in the config, the sources in metrics.json's name
        write_fake_run(root / str(i), split="paper", strategy="dtl2_fused", backbone=f"dlib_resnet+{kind}",
                       extra={"strategy.sources": sources, "backbone.name": "dlib_resnet"})

    result = evaluate_sweep(root)

    assert sorted(r.name for r in result.rows) == ["dlib_resnet+face_anthropometry/dlib_faces/dtl2_fused",
                                                   "dlib_resnet+face_geometry/dlib_faces/dtl2_fused"]


def test_sweep_never_breaks_on_an_unreadable_run(tmp_path):
    root = tmp_path / "multirun"
    write_fake_run(root / "0", split="paper")
    bad = write_fake_run(root / "1", split="paper", backbone="efficientnet_lite0", weights="imagenet")
    (bad / "predictions.csv").write_text("path,label\nonly,two-columns\n")

    result = evaluate_sweep(root, out_dir=tmp_path / "eval")

    failed = [r for r in result.rows if r.failed]
    assert len(failed) == 1 and "predictions.csv: missing column(s) ['role', 'variant']" in failed[0].reason


def test_report_formats_and_renders_tables_and_embedded_figures(tmp_path):
    png = tmp_path / "dot.png"
    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(png)
    report = Report("T").text("a | b")
    report.table(pd.DataFrame({"x": ["1|2", None]}), caption="cap", row_classes=["best", ""])
    report.figure(png, "fig")

    files = report.write(tmp_path / "out")

    markdown = files["md"].read_text()
    assert "| 1\\|2 |" in markdown and "| — |" in markdown and "![fig](../dot.png)" in markdown
    page = files["html"].read_text()
    (data,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(data) == png.read_bytes()
    assert '<tr class="best">' in page and DISCLAIMER in page
    assert fmt_interval(0.95, 0.8630, 0.98291) == "0.950 [0.863, 0.983]"
    assert fmt_count(1_100_000_000) == "1.1 G" and fmt_count(None) == "—"


# -- the browser check ----------------------------------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium not installed (apt-get install chromium chromium-driver): HTML report not browser-checked")


PROBE = """
<script>
window.addEventListener('load', () => {
  const images = [...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight);
  const rows = document.querySelectorAll('table tbody tr').length;
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({images, rows});
  document.body.appendChild(probe);
});
</script>
"""


@pytest.mark.slow
def test_html_report_renders_tables_and_figures_in_headless_chromium(evaluated_sweep, tmp_path):
    chromium = _chromium()
    result, _ = evaluated_sweep
    page = result.files["html"].read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))

    # one browser start: the DOM after the page's load event, and a screenshot of the same page
    shot = tmp_path / "shot.png"
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
               "--dump-dom", f"--screenshot={shot}", "--window-size=1280,2400", probed.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert probe, f"the page did not finish loading in Chromium: {dom.stdout[:500]}"
    import json

    measured = json.loads(probe.group(1).replace("&quot;", '"'))
    n_figures = page.count("<img ")
    assert n_figures >= 3  # ROC overlay + 2 CV confusion matrices
    assert len(measured["images"]) == n_figures
    assert all(w > 100 and h > 100 for w, h in (map(int, s.split("x")) for s in measured["images"]))
    table_rows = page.count("<tr class=") + len(re.findall(r"<tr>(?!<th)", page))
    assert measured["rows"] >= len(result.rows) and measured["rows"] <= table_rows
    assert DISCLAIMER in dom.stdout and "★ chosen on validation" in dom.stdout and "out of memory" in dom.stdout

    assert shot.is_file(), dom.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank
    # the disclaimer banner (yellow) is on the first screen
    top = pixels[:300].reshape(-1, 3).astype(int)
    assert ((top[:, 0] > 240) & (top[:, 1] > 230) & (top[:, 2] > 190) & (top[:, 2] < 215)).sum() > 1000


def test_a_spread_of_one_value_is_shown_as_missing_not_a_crash():
    # the audit's per-class std of a class with one image is pandas' NA (nullable dtypes)
    stats = pd.DataFrame({"blur": pd.array([1.5], dtype="Float64")}).groupby([0]).agg(["median", "std"])
    assert [fmt_number(v) for v in stats.iloc[0]] == ["1.500", MISSING]
    assert fmt_number(None) == fmt_number(float("nan")) == MISSING
