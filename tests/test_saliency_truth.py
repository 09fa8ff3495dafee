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


def test_each_descriptor_of_a_syndrome_gets_its_own_region_over_the_feature_it_changes(london_dir):
    import pandas as pd

    from facediag.simulate.anatomy import named_points, read_tem
    from facediag.simulate.conditions import CONDITIONS, SYNDROMES
    from facediag.simulate.source import Face
    from facediag.simulate.tree import Settings, descriptor_regions, plan

    points = read_tem(london_dir / "landmarks" / "001_03.tem") * 0.15  # a London face shrunk to ~200 px: fast
    sd = pd.Series(0.05, index=sorted({d for s in SYNDROMES.values() for d in s.parts}))
    settings = Settings(strength=2.0, conditions=("syndromes",), jitter=0, rotation=0, scale=0, shift=0)
    drawn = plan(Face("001", london_dir, points, {}), "leprosy_like", list(SYNDROMES.values()), sd, settings,
                 np.random.default_rng(0), (203, 203))  # fmt: skip
    regions = descriptor_regions(points, drawn, CONDITIONS["leprosy_like"], sd, (203, 203))
    named = named_points(drawn.target)

    def covers(region: str, point: str) -> bool:
        x, y = np.round(named[point]).astype(int)
        return bool(regions[region][y, x])

    assert set(regions) == {"eye_opening", "midface", "wide_mouth"}
    assert covers("eye_opening", "ul_l") and covers("eye_opening", "ll_r") and not covers("eye_opening", "ch_l")
    assert covers("wide_mouth", "ch_l") and covers("wide_mouth", "ch_r") and not covers("wide_mouth", "ul_l")
    assert covers("midface", "sn") and not covers("midface", "ul_l") and not covers("midface", "me")
