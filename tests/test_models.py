"""Backbones: published key layouts load strictly, the Caffe ResNets compute what the published graph
computes, preprocessing matches each spec, heads / stages / features behave, MAC counts match."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facediag.models import (
    BACKBONES,
    FaceBackbone,
    WeightsLayoutError,
    backbone_config,
    count_macs,
    create,
    create_from_config,
    extract_features,
    list_specs,
    load_spec,
)
from facediag.models.flops import unweighted_model
from facediag.models.weights import apply_key_map, load_state_dict_strict, locate_weight_file

torch.set_num_threads(1)

EXPECTED_DIMS = {"alexnet": 4096, "vgg16": 4096, "resnet50": 2048, "senet50": 2048, "dlib_resnet": 128,
                 "efficientnet_lite0": 1280}


# --------------------------------------------------------------------------- published layouts
def published_caffe_layout(squeeze_excite: bool, num_classes: int = 8631) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of pytorch-mcn's resnet50_*_dag / senet50_*_dag state dicts, from their definition."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, out: int, inp: int, kernel: int, bias: bool = False) -> None:
        shapes[f"{name}.weight"] = (out, inp, kernel, kernel)
        if bias:
            shapes[f"{name}.bias"] = (out,)

    def bn(name: str, channels: int) -> None:
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{field}"] = (channels,)

    conv("conv1_7x7_s2", 64, 3, 7)
    bn("conv1_7x7_s2_bn", 64)
    inp = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), start=2):
        for block in range(1, blocks + 1):
            name = f"conv{stage}_{block}"
            conv(f"{name}_1x1_reduce", width, inp, 1)
            bn(f"{name}_1x1_reduce_bn", width)
            conv(f"{name}_3x3", width, width, 3)
            bn(f"{name}_3x3_bn", width)
            conv(f"{name}_1x1_increase", 4 * width, width, 1)
            bn(f"{name}_1x1_increase_bn", 4 * width)
            if squeeze_excite:
                conv(f"{name}_1x1_down", 4 * width // 16, 4 * width, 1, bias=True)
                conv(f"{name}_1x1_up", 4 * width, 4 * width // 16, 1, bias=True)
            if block == 1:
                conv(f"{name}_1x1_proj", 4 * width, inp, 1)
                bn(f"{name}_1x1_proj_bn", 4 * width)
            inp = 4 * width
    conv("classifier", num_classes, 2048, 1, bias=True)
    return shapes


def published_vgg_face_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of pytorch-mcn's vgg_face_dag state dict."""
    shapes: dict[str, tuple[int, ...]] = {}
    inp = 3
    for block, (convs, width) in enumerate(zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512), strict=True), start=1):
        for index in range(1, convs + 1):
            shapes[f"conv{block}_{index}.weight"] = (width, inp, 3, 3)
            shapes[f"conv{block}_{index}.bias"] = (width,)
            inp = width
    for name, out, inp in (("fc6", 4096, 25088), ("fc7", 4096, 4096), ("fc8", 2622, 4096)):
        shapes[f"{name}.weight"] = (out, inp)
        shapes[f"{name}.bias"] = (out,)
    return shapes


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def test_published_layouts_match_the_definition_files():
    resnet, senet = published_caffe_layout(False), published_caffe_layout(True)
    assert resnet["conv3_1_1x1_reduce.weight"] == (128, 256, 1, 1)
    assert resnet["conv5_1_1x1_proj.weight"] == (2048, 1024, 1, 1)
    assert resnet["classifier.weight"] == (8631, 2048, 1, 1)
    assert senet["conv4_1_1x1_down.weight"] == (64, 1024, 1, 1)
    assert senet["conv2_3_1x1_up.bias"] == (256,)
    assert len([k for k in resnet if k.endswith(".weight") and len(resnet[k]) == 4]) == 54  # 53 convs + classifier
    assert published_vgg_face_layout()["fc6.weight"] == (4096, 25088)


@pytest.mark.parametrize(
    ("backbone", "dataset", "squeeze_excite"),
    [("resnet50", "ms1m_vggface2", False), ("resnet50", "vggface2", False),
     ("senet50", "ms1m_vggface2", True), ("senet50", "vggface2", True)],
)
@pytest.mark.parametrize("with_batch_counters", [False, True])
def test_published_caffe_layouts_load_strictly(backbone, dataset, squeeze_excite, with_batch_counters):
    spec = load_spec(backbone, dataset)
    layout = published_caffe_layout(squeeze_excite)
    state = random_state(layout)
    if with_batch_counters:  # files saved by torch >= 0.4 carry them; older ones do not
        state.update({k.replace("running_mean", "num_batches_tracked"): torch.tensor(0)
                      for k in layout if k.endswith("running_mean")})
    model = unweighted_model(backbone, spec)
    load_state_dict_strict(model.net, apply_key_map(state, spec.key_map), source=spec.file)
    assert torch.equal(model.net.conv3[0].reduce_bn.running_var, state["conv3_1_1x1_reduce_bn.running_var"])
    assert torch.equal(model.head.weight, state["classifier.weight"])


@pytest.mark.slow
def test_published_vgg_face_layout_loads_strictly_into_vgg16():
    spec = load_spec("vgg16", "vggface")
    # one constant per tensor (not 138 M random numbers): enough to see each file tensor land in its own place
    state = {k: torch.full(shape, float(i)) for i, (k, shape) in enumerate(published_vgg_face_layout().items())}
    model = unweighted_model("vgg16", spec)
    load_state_dict_strict(model.net, apply_key_map(state, spec.key_map), source=spec.file)
    assert torch.equal(model.net.features[28].weight, state["conv5_3.weight"])
    assert torch.equal(model.head.weight, state["fc8.weight"])


def test_wrong_shape_state_dict_is_refused_with_the_key_and_both_shapes():
    spec = load_spec("resnet50", "ms1m_vggface2")
    layout = published_caffe_layout(False)
    layout["conv2_1_3x3.weight"] = (64, 64, 5, 5)
    model = unweighted_model("resnet50", spec)
    with pytest.raises(WeightsLayoutError, match=r"conv2.1.conv3x3.weight: file \(64, 64, 5, 5\) vs network "
                                                 r"\(64, 64, 3, 3\)"):
        load_state_dict_strict(model.net, apply_key_map(random_state(layout), spec.key_map), spec.file)


def test_senet_weights_do_not_fit_the_plain_resnet():
    spec = load_spec("resnet50", "ms1m_vggface2")
    model = unweighted_model("resnet50", spec)
    state = apply_key_map(random_state(published_caffe_layout(True)), spec.key_map)
    with pytest.raises(WeightsLayoutError, match=r"unexpected keys.*down"):
        load_state_dict_strict(model.net, state, spec.file)


# --------------------------------------------------------------------------- Caffe graph semantics
def reference_caffe_forward(state: dict[str, torch.Tensor], x: torch.Tensor, squeeze_excite: bool) -> torch.Tensor:
    """pytorch-mcn's *_dag forward, written from the published graph with functional ops on its keys."""

    def conv(name, x, stride=1, padding=0):
        return F.conv2d(x, state[f"{name}.weight"], state.get(f"{name}.bias"), stride, padding)

    def bn(name, x):
        return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"],
                            state[f"{name}.weight"], state[f"{name}.bias"], False, 0.0, 1e-5)

    x = F.relu(bn("conv1_7x7_s2_bn", conv("conv1_7x7_s2", x, 2, 3)))
    x = F.max_pool2d(x, 3, 2, 0, ceil_mode=True)
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3), strict=True):
        for block in range(1, blocks + 1):
            name = f"conv{stage}_{block}"
            stride = 2 if block == 1 and stage > 2 else 1
            out = F.relu(bn(f"{name}_1x1_reduce_bn", conv(f"{name}_1x1_reduce", x, stride)))
            out = F.relu(bn(f"{name}_3x3_bn", conv(f"{name}_3x3", out, 1, 1)))
            out = bn(f"{name}_1x1_increase_bn", conv(f"{name}_1x1_increase", out))
            if squeeze_excite:
                gate = F.adaptive_avg_pool2d(out, 1)
                out = torch.sigmoid(conv(f"{name}_1x1_up", F.relu(conv(f"{name}_1x1_down", gate)))) * out
            shortcut = bn(f"{name}_1x1_proj_bn", conv(f"{name}_1x1_proj", x, stride)) if block == 1 else x
            x = F.relu(out + shortcut)
    pooled = F.adaptive_avg_pool2d(x, 1)
    return conv("classifier", pooled).flatten(1)


@pytest.mark.parametrize(("backbone", "squeeze_excite"), [("resnet50", False), ("senet50", True)])
def test_caffe_network_computes_the_published_graph(backbone, squeeze_excite):
    spec = load_spec(backbone, "ms1m_vggface2")
    state = random_state(published_caffe_layout(squeeze_excite, num_classes=7), seed=1)
    model = unweighted_model(backbone, dataclasses.replace(spec, num_classes=7))
    load_state_dict_strict(model.net, apply_key_map(state, spec.key_map), spec.file)
    x = torch.randn(2, 3, 97, 97)  # odd size: ceil-mode pooling and stride placement both matter
    with torch.no_grad():
        expected = reference_caffe_forward(state, x, squeeze_excite)
        assert torch.allclose(model(x), expected, atol=1e-4, rtol=1e-4)


def test_caffe_stride_sits_on_the_first_1x1_conv_and_maps_shrink_as_published():
    model = unweighted_model("resnet50", load_spec("resnet50", "vggface2"))
    block = model.net.conv3[0]
    assert block.reduce.stride == (2, 2) and block.conv3x3.stride == (1, 1) and block.proj.stride == (2, 2)
    sizes = []
    x = model.net.pool1(model.net.conv1(torch.zeros(1, 3, 224, 224)))
    sizes.append(x.shape[-1])
    with torch.no_grad():
        for stage in model.net.stages:
            x = stage(x)
            sizes.append(x.shape[-1])
    assert sizes == [56, 56, 28, 14, 7]


# --------------------------------------------------------------------------- create() for every backbone
def small_backbones() -> list[str]:
    return [b for b in BACKBONES if b != "vgg16"]


@pytest.mark.parametrize("backbone", small_backbones())
def test_random_init_backbone_gives_features_and_a_replaceable_head(backbone):
    model = create(backbone, "none")
    size = model.input_size
    images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    x = model.preprocess(images)
    assert x.shape == (2, 3, size, size) and x.dtype == torch.float32
    with torch.no_grad():
        features = model.features(x)
    assert features.shape == (2, EXPECTED_DIMS[backbone]) == (2, model.feature_dim)
    assert model.align["size"] == size
    model.replace_head(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)


@pytest.mark.slow
def test_vgg16_random_init_gives_fc7_features():
    model = create("vgg16", "none")
    with torch.no_grad():
        assert model.features(torch.zeros(1, 3, 224, 224)).shape == (1, 4096)


def test_packaged_efficientnet_weights_load_and_classify_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    model = create("efficientnet_lite0", "imagenet")
    cat = skimage_data.chelsea()[:, 75:375]  # 300x300 around the cat
    crop = torch.nn.functional.interpolate(torch.from_numpy(cat).permute(2, 0, 1)[None].float(), size=224,
                                           mode="bilinear", antialias=True)
    crop = crop.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    with torch.no_grad():
        top = model(model.preprocess(crop)).argmax(1).item()
    assert 281 <= top <= 285  # ImageNet's domestic cats


def test_packaged_dlib_weights_load_through_create():
    model = create("dlib_resnet", "dlib_faces")
    assert model.feature_dim == 128 and model.input_size == 150
    assert model.align == {"template": "dlib", "padding": 0.25, "size": 150}
    pooled = create("dlib_resnet", "dlib_faces", feature_layer="pooled")
    assert pooled.feature_dim == 256


def test_efficientnet_stages_and_bands_layers_pool_the_trunk_where_they_say():
    from facediag.models.archs.efficientnet_lite import EFFICIENTNET_TAP_STAGES

    x = torch.randn(2, 3, 96, 96)
    reference = create("efficientnet_lite0", "none")
    net = reference.net
    stage_ends = {id(stage[-1]) for i, stage in enumerate(reference.stages()) if i in EFFICIENTNET_TAP_STAGES}
    with torch.no_grad():  # the trunk by hand, block by block (eval mode: no drop-connect)
        h, pooled = net._swish(net._bn0(net._conv_stem(x))), []
        for block in net._blocks:
            h = block(h)
            if id(block) in stage_ends:
                pooled.append(h.mean(dim=(2, 3)))
        final = net._swish(net._bn1(net._conv_head(h)))
    for layer, dim, expected in (("stages", 704, torch.cat(pooled, 1)),
                                 ("bands", 3840, final.mean(dim=3).flatten(1))):  # 3x3 map: a band is a row
        model = create("efficientnet_lite0", "none", feature_layer=layer)
        model.net.load_state_dict(net.state_dict())
        assert model.feature_dim == dim
        with torch.no_grad():
            torch.testing.assert_close(model.features(x), expected)
        assert not any(m._forward_hooks for m in model.net.modules())  # the taps leave no hook behind
        with torch.no_grad():  # the final layer is still the classifier over the global pool
            torch.testing.assert_close(model(x), reference(x))


def test_unknown_backbone_and_feature_layer_are_refused():
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'"):
        create("resnet18", "none")
    with pytest.raises(ValueError, match=r"feature_layer 'fc6'.*\['fc7'\]"):
        create("alexnet", "none", feature_layer="fc6")


def test_create_from_hydra_style_config(tmp_path: Path):
    model = create_from_config(
        {"name": "dlib_resnet", "feature_layer": "pooled", "align": {"template": "dlib", "padding": 0.3, "size": 150}},
        {"name": "none", "path": None, "download": False, "cache_dir": str(tmp_path), "sha256": None},
        num_classes=2,
    )
    assert model.feature_layer == "pooled" and model.head.out_features == 2
    assert model.align["padding"] == 0.3


def test_the_hydra_group_selects_the_packaged_backbone_and_overrides_only_what_it_sets(tmp_path: Path):
    from facediag.models.config_groups import backbone_option

    group = backbone_option("dlib_resnet")
    assert backbone_config("dlib_resnet", group) == backbone_config("dlib_resnet")  # nulls keep the package's values
    group["align"]["padding"] = 0.3
    model = create_from_config(group, {"name": "none", "cache_dir": str(tmp_path)})
    assert model.align == {"template": "dlib", "padding": 0.3, "size": 150} and model.feature_layer == "descriptor"


@pytest.mark.slow
def test_registry_table_lists_every_pair_and_where_its_file_is(tmp_path: Path, capsys):
    from facediag.models.__main__ import main

    assert main(["--no-macs", "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {tuple(line.split()[:2]): line for line in lines[3:] if line.split()[:2]}
    for spec in list_specs():
        assert spec.pair in table
    assert table[("dlib_resnet", "dlib_faces")].endswith("package")
    assert table[("resnet50", "vggface2")].endswith("missing: resnet50_scratch_dag.pth")
    assert "descriptor (128)" in table[("dlib_resnet", "none")]


def test_backbone_configs_name_a_valid_default_feature_layer():
    for backbone in BACKBONES:
        config = backbone_config(backbone)
        model_layers = {"alexnet": "fc7", "vgg16": "fc7", "resnet50": "pool5", "senet50": "pool5",
                        "dlib_resnet": "descriptor", "efficientnet_lite0": "pool"}
        assert config["feature_layer"] == model_layers[backbone]
        assert config["align"]["template"] in ("dlib", "vggface2")


# --------------------------------------------------------------------------- preprocessing
def test_preprocess_applies_each_specs_range_order_and_normalisation():
    pixel = np.array([[[[10, 100, 200]]]], dtype=np.uint8)  # one RGB pixel
    cases = {
        ("alexnet", "none"): [(10 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (200 / 255 - 0.406) / 0.225],
        ("dlib_resnet", "none"): [(10 - 122.782) / 256, (100 - 117.001) / 256, (200 - 104.298) / 256],
        ("senet50", "none"): [10 - 131.0912, 100 - 103.8827, 200 - 91.4953],
    }
    for (backbone, dataset), expected in cases.items():
        model = create(backbone, dataset)
        size = model.input_size
        x = model.preprocess(np.broadcast_to(pixel, (1, size, size, 3)))
        assert torch.allclose(x[0, :, 0, 0], torch.tensor(expected, dtype=torch.float32), atol=1e-5)


def test_preprocess_flips_channels_for_a_bgr_spec():
    spec = dataclasses.replace(load_spec("senet50", "none"), channel_order="BGR", mean=(0.0, 0.0, 0.0))
    model = create("senet50", spec)
    images = np.zeros((1, 224, 224, 3), dtype=np.uint8)
    images[..., 0] = 200  # red
    x = model.preprocess(images)
    assert x[0, 2].eq(200).all() and x[0, 0].eq(0).all()


def test_preprocess_refuses_wrong_size_and_dtype_naming_the_expected_shape():
    model = create("dlib_resnet", "none")
    with pytest.raises(ValueError, match=r"\(N, 150, 150, 3\).*\(1, 224, 224, 3\)"):
        model.preprocess(np.zeros((1, 224, 224, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        model.preprocess(np.zeros((1, 150, 150, 3), dtype=np.float32))
    assert model.preprocess(np.zeros((150, 150, 3), dtype=np.uint8)).shape == (1, 3, 150, 150)


# --------------------------------------------------------------------------- heads, parameter groups, stages
def test_head_and_trunk_parameters_partition_the_network_and_take_their_own_lr():
    model = create("resnet50", "none", num_classes=5)
    head, trunk = model.head_parameters(), model.trunk_parameters()
    assert {id(p) for p in head} == {id(p) for p in model.net.fc.parameters()}
    assert len(head) + len(trunk) == len(list(model.parameters()))
    groups = model.param_groups(lr=1e-3, head_lr_mult=10.0)
    assert [g["name"] for g in groups] == ["trunk", "head"]
    assert groups[0]["lr"] == 1e-3 and groups[1]["lr"] == pytest.approx(1e-2)


def test_freezing_stages_stops_their_gradients_and_keeps_their_batch_norms_in_eval():
    model = create("resnet50", "none", num_classes=2)
    model.freeze_stages(2)
    model.train()
    assert not model.net.bn1.training and not model.net.layer1[0].bn1.training
    assert model.net.layer2[0].bn1.training and model.head.training
    assert all(not p.requires_grad for p in model.net.layer1.parameters())
    assert all(p.requires_grad for p in model.net.layer2.parameters())
    loss = model(torch.randn(2, 3, 224, 224)).sum()
    loss.backward()
    assert model.net.layer1[0].conv1.weight.grad is None
    assert model.net.layer4[0].conv1.weight.grad is not None
    groups = model.param_groups(lr=0.1)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())
    model.freeze_stages(0)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="stages"):
        model.freeze_stages(model.num_stages + 1)


@pytest.mark.parametrize(("backbone", "stages"), [("alexnet", 7), ("resnet50", 5), ("senet50", 5),
                                                  ("dlib_resnet", 6), ("efficientnet_lite0", 9)])
def test_stages_cover_the_trunk_from_the_input_up(backbone, stages):
    model = create(backbone, "none")
    assert model.num_stages == stages
    staged = {id(p) for modules in model.stages() for m in modules for p in m.parameters()}
    trunk = {id(p) for p in model.trunk_parameters()}
    assert staged == trunk


def test_dlib_descriptor_is_unavailable_after_its_fc_is_replaced():
    model = create("dlib_resnet", "none", num_classes=2)
    with pytest.raises(RuntimeError, match="descriptor"):
        model.features(torch.zeros(1, 3, 150, 150))
    pooled = create("dlib_resnet", "none", feature_layer="pooled", num_classes=2)
    assert pooled.features(torch.zeros(1, 3, 150, 150)).shape == (1, 256)


# --------------------------------------------------------------------------- feature extraction
def test_extract_features_batches_without_changing_results_or_training_state():
    model = create("dlib_resnet", "none").train()
    images = np.random.default_rng(1).integers(0, 256, (5, 150, 150, 3), dtype=np.uint8)
    features = extract_features(model, images, batch_size=2)
    assert features.shape == (5, 128) and features.dtype == np.float32
    assert model.training
    model.eval()
    with torch.no_grad():
        direct = model.features(model.preprocess(images)).numpy()
    np.testing.assert_allclose(features, direct, atol=1e-5)
    assert extract_features(model, images[:0], batch_size=2).shape == (0, 128)


@pytest.mark.slow
def test_created_dlib_backbone_features_equal_dlibs_descriptors(london_chips: np.ndarray):
    dlib = pytest.importorskip("dlib")
    model = create("dlib_resnet", "dlib_faces")
    reference = dlib.face_recognition_model_v1(str(locate_weight_file(model.spec)))
    expected = np.stack([np.asarray(reference.compute_face_descriptor(chip)) for chip in london_chips])
    actual = extract_features(model, london_chips, batch_size=2)
    assert np.abs(actual - expected).max() < 1e-4


@pytest.mark.slow
def test_gradients_reach_every_layer_of_the_dlib_backbone(london_chips: np.ndarray):
    model = create("dlib_resnet", "dlib_faces", feature_layer="pooled", num_classes=2).train()
    loss = F.cross_entropy(model(model.preprocess(london_chips[:2])), torch.tensor([0, 1]))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- MACs
# ptflops' published table (pytorch backend, 224x224): AlexNet 0.72 GMac / 61.10 M params,
# ResNet-50 4.13 GMac / 25.56 M, VGG16 15.52 GMac / 138.36 M. Adapting to k classes swaps the
# 1000-way head for a k-way one: params change by exactly (k - 1000) * (in + 1).
PUBLISHED = {"alexnet": (0.72e9, 61_100_840, 4096), "resnet50": (4.13e9, 25_557_032, 2048),
             "vgg16": (15.52e9, 138_357_544, 4096)}


def published_adapted(backbone: str, classes: int) -> tuple[float, int]:
    """Published (MACs, params) with the 1000-way head swapped for a ``classes``-way one."""
    macs, params, width = PUBLISHED[backbone]
    head_change = (classes - 1000) * (width + 1)  # ptflops counts a linear layer's MACs as its weights + bias
    return macs + head_change, params + head_change


@pytest.mark.parametrize("backbone", ["alexnet", "resnet50", pytest.param("vgg16", marks=pytest.mark.slow)])
@pytest.mark.parametrize("classes", [2, 5])
def test_macs_of_adapted_imagenet_backbones_match_published_figures(backbone, classes):
    macs, params = count_macs(backbone, "imagenet", num_classes=classes)
    published_macs, published_params = published_adapted(backbone, classes)
    assert params == published_params
    assert macs == pytest.approx(published_macs, abs=0.006e9)  # the table rounds to 0.01 GMac


def test_caffe_resnet50_counts_less_than_torchvision_because_of_stride_placement():
    caffe, caffe_params = count_macs("resnet50", "vggface2", num_classes=2)
    torchvision_macs, torchvision_params = count_macs("resnet50", "imagenet", num_classes=2)
    assert caffe_params == torchvision_params  # same weights, different strides
    # the 1x1 reduce of conv3_1 / conv4_1 / conv5_1 runs at a quarter of the positions: 3 x 77 MMac
    assert torchvision_macs - caffe == pytest.approx(3 * 3 / 4 * 256 * 128 * 56 * 56, rel=0.05)
    assert caffe == pytest.approx(3.90e9, rel=0.01)


def test_cached_macs_are_counted_once_per_architecture_and_head_and_recounted_when_the_file_is_bad(
    tmp_path, monkeypatch
):
    from facediag.models import flops

    expected = count_macs("alexnet", "imagenet", num_classes=2)
    assert flops.cached_count_macs("alexnet", "imagenet", 2, tmp_path) == expected
    (stored,) = (tmp_path / "macs").glob("*.json")
    counted = []
    monkeypatch.setattr(flops, "count_macs", lambda *args: counted.append(args) or (1, 2))
    assert flops.cached_count_macs("alexnet", "imagenet", 2, tmp_path) == expected and not counted
    assert flops.cached_count_macs("alexnet", "imagenet", 5, tmp_path) == (1, 2)  # another head: counted
    stored.write_text("{not json")
    assert flops.cached_count_macs("alexnet", "imagenet", 2, tmp_path) == (1, 2)
    assert flops.cached_count_macs("alexnet", "imagenet", 2, None) == (1, 2) and len(counted) == 3


def test_macs_count_custom_layers_and_leave_the_model_untouched():
    model = create("efficientnet_lite0", "none")
    macs, params = count_macs(model, num_classes=2)
    assert macs == pytest.approx(0.40e9, rel=0.02)  # EfficientNet-Lite0: ~0.4 GMac
    assert params == sum(p.numel() for p in model.parameters()) - 1000 * 1281 + 2 * 1281
    assert model.head.out_features == 1000 and isinstance(model, FaceBackbone)
