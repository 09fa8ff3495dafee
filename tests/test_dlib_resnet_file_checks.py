"""Every check of the dlib ResNet reader (facediag.models.archs.dlib_resnet) on tiny hand-encoded byte strings and
tiny layer lists: a file that is not dlib's face ResNet is refused with its name and the reason, at the first wrong
byte or layer (the packaged 22 MB file is never read here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facediag.models.archs import dlib_resnet as dr
from facediag.models.archs.dlib_resnet import DlibFaceResNet, DlibModelError, add_zero_padded

FILE = "my_resnet.dat"


def i(value: int) -> bytes:
    """dlib's integer: a control byte (byte count, 0x80 when negative), then the magnitude little-endian."""
    size = max(1, (abs(value).bit_length() + 7) // 8)
    return bytes([size | (0x80 if value < 0 else 0)]) + abs(value).to_bytes(size, "little")


def f(mantissa: int, exponent: int = 0) -> bytes:
    return i(mantissa) + i(exponent)


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return i(len(raw)) + raw


def tensor(values: np.ndarray, shape: tuple[int, int, int, int]) -> bytes:
    return i(2) + b"".join(i(d) for d in shape) + np.asarray(values, dtype="<f4").tobytes()


def alias(shape: tuple[int, int, int, int]) -> bytes:
    return i(1) + b"".join(i(d) for d in shape)


LR = f(1) * 4  # learning-rate and weight-decay multipliers


def reader(data: bytes) -> dr._Reader:
    return dr._Reader(data, FILE)


def test_special_float_exponents_read_as_infinities_and_nan():
    r = reader(f(0, 32000) + f(0, 32001) + f(0, 32002) + f(3, -1))
    assert r.float("a") == math.inf and r.float("b") == -math.inf and math.isnan(r.float("c"))
    assert r.float("d") == 1.5


@pytest.mark.parametrize(("data", "read", "message"), [
    (b"x", lambda r: r.bool("use_bias"), "corrupt bool b'x' for use_bias"),
    (i(300), lambda r: r.string("layer name"), "implausible string length 300 for layer name"),
    (s(b"\xe9t\xe9"), lambda r: r.string("layer name"), "non-ASCII layer name"),
    (i(7), lambda r: r.expect_version((1, 2), "layer wrapper"), r"unexpected version 7 for layer wrapper"),
    (i(2) + i(1) + i(-2) + i(1) + i(1), lambda r: r.tensor("con_4"), r"negative tensor shape \(1, -2, 1, 1\)"),
])  # fmt: skip
def test_a_corrupt_primitive_is_named_with_the_file_and_byte_offset(data, read, message):
    with pytest.raises(DlibModelError, match=f"{FILE}.*{message}.*at byte"):
        read(reader(data))


def conv_bytes(name: str, filters: int = 2, declared: int = 2, extra: int = 0, flags: bytes = b"") -> bytes:
    """A conv layer's details: ``filters`` 1x1 filters over 1 channel with biases (``declared`` in the header,
    ``extra`` surplus parameters)."""
    n = filters * 1 + filters + extra
    return (tensor(np.zeros(n), (n, 1, 1, 1)) + i(declared) + i(1) + i(1) + i(1) + i(1) + i(0) + i(0)
            + alias((filters, 1, 1, 1)) + alias((1, filters, 1, 1)) + LR + flags)  # fmt: skip


def test_a_conv_layer_reads_its_weights_and_biases_and_names_each_inconsistency():
    conv = dr._read_conv(reader(conv_bytes("con_4")), "con_4")
    assert conv.weight.shape == (2, 1, 1, 1) and conv.bias.shape == (2,) and conv.stride == (1, 1)
    no_bias = dr._read_conv(reader(conv_bytes("con_5", extra=-2, flags=b"0")), "con_5")
    assert (no_bias.bias == 0).all()
    with pytest.raises(DlibModelError, match="con_6 with a fused relu is not supported"):
        dr._read_conv(reader(conv_bytes("con_6", flags=b"11")), "con_6")
    with pytest.raises(DlibModelError, match=r"con_4: filter shape \(2, 1, 1, 1\) disagrees with 3 x \(1, 1\)"):
        dr._read_conv(reader(conv_bytes("con_4", declared=3)), "con_4")
    with pytest.raises(DlibModelError, match=r"con_4: 5 parameters, expected 2 \+ 2"):
        dr._read_conv(reader(conv_bytes("con_4", extra=1)), "con_4")


def affine_bytes(mode: int = 0, parameters: int = 4, disabled: bytes = b"") -> bytes:
    return (tensor(np.ones(parameters), (parameters, 1, 1, 1)) + alias((1, 2, 1, 1)) + alias((1, 2, 1, 1))
            + i(mode) + disabled)  # fmt: skip


def test_an_affine_layer_is_a_per_channel_scale_and_shift_and_other_modes_are_refused():
    affine = dr._read_affine(reader(affine_bytes()), "affine_")
    assert affine.gamma.shape == (2,) and affine.beta.shape == (2,)
    with pytest.raises(DlibModelError, match="disabled affine layers are not supported"):
        dr._read_affine(reader(affine_bytes(disabled=b"1")), "affine_2")
    with pytest.raises(DlibModelError, match="only CONV_MODE .0. affine layers are supported, found mode 1"):
        dr._read_affine(reader(affine_bytes(mode=1)), "affine_")
    with pytest.raises(DlibModelError, match="affine_: 6 parameters, expected 2 x 2"):
        dr._read_affine(reader(affine_bytes(parameters=6)), "affine_")


def fc_bytes(bias_mode: int = 1, outputs: int = 2, use_bias: bytes = b"0") -> bytes:
    return (i(outputs) + i(3) + tensor(np.arange(6), (3, 2, 1, 1)) + alias((3, 2, 1, 1)) + alias((1, 2, 1, 1))
            + i(bias_mode) + LR + use_bias)  # fmt: skip


def test_a_fully_connected_layer_has_no_bias_and_its_size_must_match():
    fc = dr._read_fc(reader(fc_bytes()), "fc_3")
    assert fc.weight.shape == (3, 2) and fc.weight[2, 1] == 5
    with pytest.raises(DlibModelError, match="only fc_no_bias .bias mode 1. is supported, found mode 0"):
        dr._read_fc(reader(fc_bytes(bias_mode=0)), "fc_3")
    with pytest.raises(DlibModelError, match="fc_3: 6 parameters for 3 -> 4"):
        dr._read_fc(reader(fc_bytes(outputs=4)), "fc_3")
    with pytest.raises(DlibModelError, match="disabled relu layers are not supported"):
        dr._read_relu(reader(b"1"), "relu_2")


def test_a_network_without_the_sized_rgb_input_or_with_a_tag_on_the_input_is_refused():
    head = i(1) + s("loss_metric_")
    with pytest.raises(DlibModelError, match="expected the input layer 'input_rgb_image_sized', found 'input_rgb'"):
        dr._parse_network(head + i(2) + s("input_rgb"), FILE)
    with pytest.raises(DlibModelError, match="a tag layer directly on the input is not supported"):
        dr._parse_network(head + i(2) + i(1) + s("input_rgb_image_sized"), FILE)
    with pytest.raises(DlibModelError, match="no input layer found"):
        dr._parse_network(head + i(2) * 10_002, FILE)


def conv(out: int, inp: int, kernel: int, stride: int) -> dr._Conv:
    return dr._Conv(np.zeros((out, inp, kernel, kernel), np.float32), np.zeros(out, np.float32), (stride, stride),
                    (dr._dlib_padding(kernel, stride),) * 2)  # fmt: skip


def affine(channels: int) -> dr._Affine:
    return dr._Affine(np.ones(channels, np.float32), np.zeros(channels, np.float32))


def tiny_layers(stem_pool=(3, 3), head_fc: np.ndarray | None = None, block_conv: dr._Conv | None = None) -> list:
    """A stem (4 channels, 3x3), one stride-1 residual block and the head, as the file lists them."""
    relu, add, tag = dr._Simple("relu"), dr._Simple("add_prev"), dr._Simple(dr._TAG_OR_SKIP)
    return [conv(4, 3, 3, 2), affine(4), relu, dr._Pool("max_pool", stem_pool, (2, 2), (0, 0)),
            tag, block_conv or conv(4, 4, 3, 1), affine(4), relu, conv(4, 4, 3, 1), affine(4), add, relu,
            dr._Pool("avg_pool", (0, 0), (1, 1), (0, 0)),
            dr._Fc(np.ones((4, 8), np.float32) if head_fc is None else head_fc)]  # fmt: skip


def test_tiny_layers_build_a_tiny_network_and_each_mismatch_names_the_file():
    good = dr._Input(DlibFaceResNet.MEAN, (150, 150))
    network = dr._build(good, tiny_layers(), FILE)
    assert network.feature_dim == 8 and network.pooled_dim == 4 and len(network.blocks) == 1
    assert torch.equal(network.fc.weight, torch.ones(8, 4))
    unpadded = dr._Conv(np.zeros((4, 4, 3, 3), np.float32), np.zeros(4, np.float32), (1, 1), (0, 0))
    cases = [
        (dr._Input(DlibFaceResNet.MEAN, (100, 100)), tiny_layers(), r"input size \(100, 100\), expected \(150, 150\)"),
        (dr._Input((0.0, 0.0, 0.0), (150, 150)), tiny_layers(), r"input mean \(0.0, 0.0, 0.0\) != "),
        (good, tiny_layers()[1:], r"layer sequence \['affine', 'relu', 'max_pool', 'tag/skip'\] .* is not dlib's"),
        (good, tiny_layers()[:6] + tiny_layers()[-2:], r"at residual position 0 match no ResNet block"),
        (good, tiny_layers(stem_pool=(2, 2)), r"stem max_pool: pool \(2, 2\) stride \(2, 2\) padding \(0, 0\)"),
        (good, tiny_layers(block_conv=unpadded), r"block 0 conv1: stride/padding \(1, 1\)/\(0, 0\) != "),
        (good, tiny_layers(block_conv=conv(4, 2, 3, 1)), r"block 0 conv1 weight: file shape \(4, 2, 3, 3\)"),
    ]
    for network_input, layers, message in cases:
        with pytest.raises(DlibModelError, match=f"{FILE}.*{message}"):
            dr._build(network_input, layers, FILE)


def test_the_network_refuses_unnormalised_input_and_shortcuts_of_another_batch():
    with pytest.raises(ValueError, match=r"expected a normalised \(N, 3, H, W\) tensor, got shape \(2, 150, 150\)"):
        DlibFaceResNet(blocks=[(4, 1)], stem_channels=4, stem_kernel=3).pooled(torch.zeros(2, 150, 150))
    with pytest.raises(ValueError, match="batch sizes differ: 1 vs 2"):
        add_zero_padded(torch.zeros(1, 2, 3, 3), torch.zeros(2, 1, 3, 3))
