"""Fused DTL2 (facediag.strategies.fused): several pretraining sources, one run, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from facediag.classifiers.svm import decision_scores
from facediag.models.features import region_box, region_crops
from facediag.strategies.fused import VAL_SOURCE, load_fusion, source_config
from tests.conftest import FUSED, compose_train, run_python, train_cli
from tests.faces_cache import faces_only_cache


def train_fused(method: str, run_dir: Path, shared_cache: Path, *overrides: str) -> Path:
    """A small fused run (6 people per class, 3 folds, two Cs) through train.py, as users start it."""
    return train_cli(run_dir, shared_cache, f"method={method}", *FUSED, *overrides)


def predicted_scores(run_dir: Path, tmp_path: Path, cache: Path, *options: str) -> np.ndarray:
    """The scores of the run's test photos (in predictions.csv's order) applied the way users do
    (python -m facediag.predict [options], each source's own crop or landmarks)."""
    predictions = pd.read_csv(run_dir / "predictions.csv")
    columns = [c for c in predictions.columns if c.startswith("score_")]
    photos = tmp_path / "photos"
    if not photos.is_dir():
        photos.mkdir()
        for i, path in enumerate(predictions["path"]):
            (photos / f"{i:02d}_{Path(path).name}").symlink_to(path)
    scored_csv = tmp_path / f"scored{'_'.join(('', *options))}.csv"
    out = run_python("-m", "facediag.predict", str(photos), f"run={run_dir}", f"out={scored_csv}",
                     f"cache_dir={cache}", "workers=1", *options)
    assert out.returncode == 0, out.stderr[-3000:]
    scored = pd.read_csv(scored_csv)
    scored["path"] = [str(Path(p).resolve()) for p in scored["path"]]
    mine = scored.set_index("path").loc[[str(Path(p).resolve()) for p in predictions["path"]]]
    return mine[columns].to_numpy(float)


def assert_predict_reproduces_the_test_scores(run_dir: Path, tmp_path: Path, cache: Path) -> None:
    """Applied to the run's test photos the way users do, the run gives its own test scores again."""
    predictions = pd.read_csv(run_dir / "predictions.csv")
    columns = [c for c in predictions.columns if c.startswith("score_")]
    np.testing.assert_allclose(predicted_scores(run_dir, tmp_path, cache), predictions[columns].to_numpy(),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_fused_run_through_the_cli_sums_its_sources_and_reloads_its_model(tiny_fused_run, tmp_path, shared_cache):
    from facediag.models.flops import count_macs

    run_dir = tiny_fused_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["strategy"] == "dtl2_fused" and metrics["backbone"] == "dlib_resnet+efficientnet_lite0"
    assert metrics["weights"] == "dlib_faces+imagenet"
    sources = metrics["sources"]
    assert [(s["backbone"], s["weights"]) for s in sources] == [("dlib_resnet", "dlib_faces"),
                                                               ("efficientnet_lite0", "imagenet")]
    assert [s["columns"] for s in sources] == [[0, 128], [128, 1408]] and metrics["feature_dim"] == 1408
    assert [s["crop"] for s in sources] == [[150, "dlib", 0.25], [224, "vggface2", 0.2]]
    # MACs are the sum of the parts, each counted as its single-backbone DTL2 row counts it
    singles = [count_macs(s["backbone"], s["weights"], 4) for s in sources]
    assert metrics["macs"] == sum(m for m, _ in singles) and metrics["params"] == sum(p for _, p in singles)
    assert metrics["fusion_rule"] in ("block_scaled", "stacked")
    assert set(metrics["fusion_cv_accuracy"]) == {"block_scaled", "stacked"}
    assert metrics["val_score"] == metrics["fusion_cv_accuracy"][metrics["fusion_rule"]]
    assert metrics["val_accuracy"] == metrics["val_score"] and metrics["val_source"] == VAL_SOURCE
    assert all(0.0 <= s["cv_accuracy"] <= 1.0 and s["svm_C"] in (0.1, 1.0) for s in sources)
    # the saved model (scikit-learn types only) reproduces the run's test scores from its dumped features
    test = np.load(run_dir / "features" / "test.npz")
    predictions = pd.read_csv(run_dir / "predictions.csv")
    order = pd.Series(range(len(test["paths"])), index=test["paths"])[predictions["path"]].to_numpy()
    scores = decision_scores(load_fusion(run_dir), test["features"][order], 4)
    columns = [c for c in predictions.columns if c.startswith("score_")]
    np.testing.assert_allclose(scores, predictions[columns].to_numpy(), rtol=1e-5, atol=1e-6)
    probabilities = load_fusion(run_dir, probabilities=True).predict_proba(test["features"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert_predict_reproduces_the_test_scores(run_dir, tmp_path, shared_cache)


def assert_the_methods_paragraph_names_each_source_and_its_crop(run_dir, metrics, out_dir):
    """The sweep report's generated methods paragraph describes the fused row by each source, its crop included."""
    from facediag.core.crop import CropSpec
    from facediag.evaluation import evaluate_sweep
    from facediag.models.features import source_name

    evaluate_sweep([run_dir], out_dir=out_dir)
    methods = next(line for line in (out_dir / "report.md").read_text().splitlines() if "Methods (generated)" in line)
    assert "None" not in methods and f"fused DTL2 over {len(metrics['sources'])} sources" in methods
    for source in metrics["sources"]:
        assert f"{source_name(source)} {CropSpec.of(source['crop'])}" in methods, source


# three sources: dlib ResNet flip-averaged; EfficientNet on the tight crop, a region of it (not symmetric, so the
# order of cutting and mirroring shows), flip-averaged, its mid-level stages (every view option composed, in training
# and in predict); the face geometry (landmark features, no CNN). The inner CV may also choose among the sources.
REGION = [0.1, 0.5, 0.8, 1.0]
VIEWS_AND_GEOMETRY = ("strategy.sources=[{backbone:dlib_resnet,weights:dlib_faces,flip:true},"
                      "{backbone:efficientnet_lite0,weights:imagenet,align:{template:dlib,padding:0.25},"
                      "region:[0.1,0.5,0.8,1.0],flip:true,feature_layer:stages},{features:face_geometry}]")
TIGHT = "efficientnet_lite0:stages@dlib-0.25-224[0.1,0.5,0.8,1]-flip"


@pytest.mark.slow
def test_flip_region_feature_layer_and_geometry_sources_and_source_selection_through_the_cli_and_predict(
    tiny_fused_run, tmp_path, shared_cache
):
    from facediag.apply.trained_run import TrainedRun
    from facediag.core.crop import CropSpec
    from facediag.models.flops import count_macs
    from facediag.models.geometry import N_FEATURES, landmark_features, mirrored
    from facediag.strategies.fused import landmark_options

    # a cache of its own, its feature folders this run's alone; it starts with the faces tiny_fused_run (the same
    # people) detected in the session's cache
    run_dir, cache = tmp_path / "run", faces_only_cache(shared_cache, tmp_path / "cache")
    train_fused("dlib_resnet_efficientnet_lite0_geometry_dtl2_fused", run_dir, cache, VIEWS_AND_GEOMETRY,
                "strategy.select_sources=true")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    flipped, tight, geometry = metrics["sources"]
    assert metrics["backbone"] == f"dlib_resnet-flip+{TIGHT}+face_geometry"
    assert metrics["weights"] == "dlib_faces+imagenet"
    assert tight["feature_layer"] == "stages" and tight["feature_dim"] == 704
    assert flipped["name"] == "dlib_resnet-flip" and flipped["flip"] is True and "region" not in flipped
    assert tight["crop"] == [224, "dlib", 0.25] and tight["region"] == REGION and tight["flip"] is True
    # the geometry: landmark features, no CNN, after the CNN sources' columns
    assert geometry["features"] == "face_geometry" and geometry["macs"] == 0 and geometry["cnn_images"] == 0
    assert geometry["columns"] == [832, 832 + N_FEATURES] and metrics["feature_dim"] == 832 + N_FEATURES
    # a flip-averaged source runs its CNN twice per image: twice the MACs, the parameters once
    dlib_macs, dlib_params = count_macs("dlib_resnet", "dlib_faces", 4)
    assert flipped["macs"] == 2 * dlib_macs and flipped["params"] == dlib_params
    assert metrics["macs"] == flipped["macs"] + tight["macs"]
    # the inner CV scored every candidate: both rules over all sources, stacking over pairs, single sources
    candidates = set(metrics["fusion_cv_accuracy"])
    assert {"block_scaled", "stacked", f"stacked[{TIGHT}+face_geometry]", "single[face_geometry]"} <= candidates
    assert len(candidates) == 8 and metrics["fusion_rule"] in candidates
    assert metrics["val_score"] == max(metrics["fusion_cv_accuracy"].values())
    assert set(metrics["fusion_sources"]) <= {"dlib_resnet-flip", TIGHT, "face_geometry"}
    # the mirrored crops' features sit in a cache of their own; the source's columns are the mean of the two
    method_keys = {k.parent: key for k in (cache / "features").glob("*/key.json")
                   if not (key := json.loads(k.read_text())).get("preprocess", {}).get("control")}  # not a control's
    folders = {key.get("view"): folder for folder, key in method_keys.items() if key["backbone"] == "dlib_resnet"}
    assert set(folders) == {None, "mirrored"}
    test = np.load(run_dir / "features" / "test.npz")
    digests = pd.read_csv(run_dir / "split.csv").set_index("path").loc[test["paths"], "sha256"]
    plain, mirrored_view = ([np.load(folders[view] / f"{d}.npy") for d in digests] for view in (None, "mirrored"))
    np.testing.assert_array_equal(test["features"][:, :128], (np.stack(plain) + np.stack(mirrored_view)) / 2)
    assert not np.allclose(np.stack(plain), np.stack(mirrored_view))  # a mirrored face is another input
    # the region view: the crop's region resized to 224 px, then (flip) mirrored; both cached under the region
    regions = {k.get("view"): folder for folder, k in method_keys.items() if k.get("region") == REGION}
    assert set(regions) == {None, "mirrored"}
    assert all("region" not in k for k in method_keys.values() if k["crop"][0] == 150)
    plain, mirrored_view = (np.stack([np.load(regions[view] / f"{d}.npy") for d in digests])
                            for view in (None, "mirrored"))
    np.testing.assert_array_equal(test["features"][:, 128:832], (plain + mirrored_view) / 2)
    assert_predict_reproduces_the_test_scores(run_dir, tmp_path, cache)
    # tta=flip: the flip-averaged CNN sources' features stay as they are (mirroring the photo changes none); the
    # geometry is measured on the mirrored landmarks too; the scores are the mean over the photo and its mirror
    predictions = pd.read_csv(run_dir / "predictions.csv")
    paths = [str(p) for p in predictions["path"]]
    order = pd.Series(range(len(test["paths"])), index=test["paths"])[paths].to_numpy()
    faces = TrainedRun(run_dir).preprocessor().faces(paths, CropSpec.of(geometry["crop"]), landmarks=True,
                                                      **landmark_options(geometry))
    assert faces.paths == paths
    features = test["features"][order]
    mirrored_geometry = features.copy()
    mirrored_geometry[:, 832:] = landmark_features("face_geometry", mirrored(faces.landmarks), geometry["crop"][1])
    fusion = load_fusion(run_dir)
    both = (decision_scores(fusion, features, 4) + decision_scores(fusion, mirrored_geometry, 4)) / 2
    np.testing.assert_allclose(predicted_scores(run_dir, tmp_path, cache, "tta=flip"), both, rtol=1e-4, atol=1e-5)
    assert_the_methods_paragraph_names_each_source_and_its_crop(run_dir, metrics, tmp_path / "report")


def test_a_source_takes_its_own_backbone_and_weights_config(tmp_path):
    cfg = compose_train(tmp_path, "method=dlib_resnet_efficientnet_lite0_dtl2_fused", "weights.path=/pinned/dlib.pt",
                        cache_dir=tmp_path / "cache")
    own_backbone, own_weights = source_config(cfg, {"backbone": "dlib_resnet", "weights": "dlib_faces"})
    assert own_weights.path == "/pinned/dlib.pt"  # the run's own pair keeps the command line's options
    backbone, weights = source_config(cfg, {"backbone": "efficientnet_lite0", "weights": "imagenet",
                                            "feature_layer": "pool", "sha256": "ab" * 32})
    assert (backbone.align.size, backbone.align.template) == (224, "vggface2")
    assert weights.path is None and weights.sha256 == "ab" * 32
    assert weights.cache_dir == f"{tmp_path / 'cache'}/weights"  # ${paths.cache_dir} resolved against the run


def test_a_source_is_named_by_its_view_and_its_mirrored_features_keyed_apart(tmp_path):
    from facediag.models.feature_cache import backbone_feature_cache
    from facediag.strategies.fused import view_name

    assert view_name("efficientnet_lite0", (224, "vggface2", 0.2), False) == "efficientnet_lite0"
    assert view_name("efficientnet_lite0", (224, "dlib", 0.25), True) == "efficientnet_lite0@dlib-0.25-224-flip"
    assert view_name("dlib_resnet", (150, "dlib", 0.25), True) == "dlib_resnet-flip"
    lower_face = view_name("efficientnet_lite0", (224, "vggface2", 0.2), True, "lower_face")
    assert lower_face == "efficientnet_lite0[lower_face]-flip"
    fractions = view_name("efficientnet_lite0", (224, "vggface2", 0.2), False, [0, 0.5, 1, 1])
    assert fractions == "efficientnet_lite0[0,0.5,1,1]"
    bands = view_name("efficientnet_lite0", (224, "vggface2", 0.2), True, None, "bands")
    assert bands == "efficientnet_lite0:bands-flip"
    assert view_name("efficientnet_lite0", (224, "vggface2", 0.2), False, None, "pool") == "efficientnet_lite0"
    cfg = compose_train(tmp_path, "method=dlib_resnet_efficientnet_lite0_dtl2_fused", cache_dir=tmp_path / "cache")
    backbone, weights = source_config(cfg, {"backbone": "efficientnet_lite0", "weights": "imagenet", "flip": True})
    nodes = [OmegaConf.to_container(n, resolve=True) for n in (backbone, weights, cfg.preprocess)]
    plain, mirrored = (backbone_feature_cache(tmp_path, *nodes, mirrored=m) for m in (False, True))
    assert plain.folder != mirrored.folder and mirrored.key["view"] == "mirrored"
    assert "view" not in plain.key  # the unmirrored key is the one single-backbone DTL2 runs fill
    region = backbone_feature_cache(tmp_path, *nodes, region=region_box("lower_face"))
    assert region.folder not in (plain.folder, mirrored.folder) and "region" not in plain.key
    assert region.key["region"] == [0.125, 0.4, 0.875, 0.95]


def test_a_region_view_is_that_part_of_the_crop_at_the_input_size():
    crops = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    crops[:, 4:, :4] = 200  # the lower left quarter
    view = region_crops(crops, (0.0, 0.5, 0.5, 1.0))
    assert view.shape == crops.shape and view.dtype == np.uint8 and (view == 200).all()
    np.testing.assert_array_equal(region_crops(crops, (0, 0, 1, 1)), crops)
    with pytest.raises(ValueError, match=r"region 'mouth': unknown name; choose one of \['lower_face'\]"):
        region_box("mouth")
    with pytest.raises(ValueError, match=r"region \[0.5, 0.0, 0.2, 1.0\]: need 0 <= x0 < x1 <= 1"):
        region_box([0.5, 0.0, 0.2, 1.0])


def test_a_source_with_an_unknown_backbone_or_key_is_refused_by_name(tmp_path):
    cfg = compose_train(tmp_path, "method=dlib_resnet_efficientnet_lite0_dtl2_fused")
    with pytest.raises(ValueError, match=r"unknown backbone 'nosuchnet'; choose one of \[.*'dlib_resnet'"):
        source_config(cfg, {"backbone": "nosuchnet", "weights": "imagenet"})
    with pytest.raises(ValueError, match=r"unknown keys \['layer'\]"):
        source_config(cfg, {"backbone": "efficientnet_lite0", "weights": "imagenet", "layer": "pool"})


def test_fused_strategy_needs_two_sources_and_known_rules():
    from facediag.strategies.fused import FusedDTL2

    with pytest.raises(ValueError, match="at least two sources"):
        FusedDTL2(sources=[{"backbone": "dlib_resnet", "weights": "dlib_faces"}])
    with pytest.raises(ValueError, match="strategy.rules must be among"):
        FusedDTL2(rules=["vote"])


def test_a_landmark_source_with_an_unknown_kind_or_key_is_refused_by_name():
    from facediag.strategies.fused import FusedDTL2

    cnn = {"backbone": "dlib_resnet", "weights": "dlib_faces"}
    with pytest.raises(ValueError, match=r"unknown features; choose one of \['face_anthropometry', 'face_geometry', "
                                         r"'skin_colour'\]"):
        FusedDTL2(sources=[cnn, {"features": "wrinkles"}])
    with pytest.raises(ValueError, match=r"unknown keys \['size'\]"):
        FusedDTL2(sources=[cnn, {"features": "face_geometry", "size": 150}])
    with pytest.raises(ValueError, match="give backbone and weights, or features"):
        FusedDTL2(sources=[cnn, {"backbone": "efficientnet_lite0"}])
    with pytest.raises(ValueError, match="flip must be true or false"):
        FusedDTL2(sources=[cnn, {**cnn, "flip": "yes"}])
    with pytest.raises(ValueError, match=r"unknown keys \['flip'\]"):  # geometry has no mirror view to average
        FusedDTL2(sources=[cnn, {"features": "face_geometry", "flip": True}])
    with pytest.raises(ValueError, match=r"source .*efficientnet_lite0.*: region \[0, 1\]: give a name or four"):
        FusedDTL2(sources=[cnn, {"backbone": "efficientnet_lite0", "weights": "imagenet", "region": [0, 1]}])

