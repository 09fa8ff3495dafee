"""benchmarks/saliency.py --truth: how saliency maps are scored against a simulated tree's truth masks (tiny arrays,
no model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from facediag.core.crop import CropSpec

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "saliency.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module (it puts benchmarks/ on sys.path for its ``common`` helpers)."""
    spec = importlib.util.spec_from_file_location("saliency_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pointing_game_hits_only_when_the_maximum_lies_in_the_region_and_skips_a_flat_map(bench):
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    inside, outside = np.zeros((4, 4)), np.zeros((4, 4))
    inside[1, 1], outside[3, 3] = 1.0, 1.0
    assert bench.pointing_hit(inside, mask) == 1.0
    assert bench.pointing_hit(outside, mask) == 0.0
    assert np.isnan(bench.pointing_hit(np.ones((4, 4)), mask))


def test_a_mask_is_warped_into_the_crop_by_the_crops_own_alignment(bench):
    photo_mask = np.zeros((20, 20), dtype=bool)
    photo_mask[10:20, :] = True  # the lower half of the photo
    half = SimpleNamespace(aligner=SimpleNamespace(crop_matrix=lambda result, crop: np.array([[0.5, 0, 0],
                                                                                            [0, 0.5, 0]])))
    crop = bench.warped_mask(half, None, CropSpec(size=10), photo_mask)
    assert crop.shape == (10, 10) and crop[6:].all() and not crop[:4].any()


def record(run_dir: str, model: str, inside: float, hit: float, right: bool, rho: float = 0.1) -> dict[str, object]:
    return {"run dir": run_dir, "run": "dlib dtl1", "kind": "geometric", "target": "truth mask", "method": "gradcam",
            "model": model, "photo": "x.jpg", "inside": inside, "area": 0.2, "hit": hit, "rho": rho, "right": right,
            "seconds": 0.1}


def test_pooled_rows_put_the_runs_photos_together_and_count_hits_over_maps_that_are_not_flat(bench):
    records = [record("fold0", "trained", 0.6, 1.0, True), record("fold0", "randomised", 0.2, 0.0, True),
               record("fold1", "trained", 0.2, 0.0, False), record("fold1", "randomised", 0.1, float("nan"), False)]
    pooled = bench.summarise_truth(records, pool=True)
    assert [row["model"] for row in pooled] == ["trained", "randomised"]
    trained, randomised = pooled
    assert trained["runs"] == 2 and trained["photos"] == 2 and trained["right"] == "0.50"
    assert trained["ratio"] == "2.00" and trained["pointing game"] == "0.50 (1/2)"
    assert trained["ratio, right"] == "3.00" and trained["pointing, right"] == "1.00 (1/1)"
    assert randomised["pointing game"] == "0.00 (0/1)"  # the flat map is left out, not counted a miss
    per_run = bench.summarise_truth(records)
    assert len(per_run) == 4 and {row["runs"] for row in per_run} == {1}
