"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a PyTorch module.

The ``.dat`` file is parsed in pure Python; dlib is not needed at run time. Format (dlib/serialize.h,
dlib/dnn/core.h, layers.h, input.h, loss.h, cuda/tensor.h):

* integers: a control byte (low nibble = byte count, bit 0x80 = negative) then little-endian bytes;
* floats: two integers, mantissa and exponent (value = mantissa * 2**exponent);
* strings: an integer length then the bytes; bools: ASCII ``'0'`` / ``'1'``;
* tensors: version 2, four integers (n, k, nr, nc), then raw little-endian float32.

The network is written from the loss layer down: the loss layer, then one version number per layer
wrapper from the top to the input (``add_layer`` = 2, the one holding the input = 2 or 3, tag and skip
layers = 1 with no payload), then the input layer and each ``add_layer``'s details from the bottom up.
Tag and skip layers carry no id in the file, so their wiring is that of dlib's ``ares`` / ``ares_down``
residual templates (dnn_face_recognition_ex.cpp); the parser checks the layer sequence matches them.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facediag.core.download import verify_sha256
from facediag.models.face_backbone import HEAD_OUTPUT, PENULTIMATE
from facediag.models.registry import register_architecture, register_backbone

PACKAGED_MODEL_NAME = "dlib_face_recognition_resnet_model_v1.dat"
PACKAGED_MODEL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

# (filters, stride) of every residual block from the input up: alevel4 .. alevel0 of dlib's example.
DLIB_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    ((32, 1),) * 3
    + ((64, 2),)
    + ((64, 1),) * 3
    + ((128, 2),)
    + ((128, 1),) * 2
    + ((256, 2),)
    + ((256, 1),) * 2
    + ((256, 2),)
)

_FLOAT_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
_TAG_OR_SKIP = "tag/skip"


class DlibModelError(ValueError):
    """A dlib model file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def packaged_model_path() -> Path:
    """Path of the ResNet file shipped in the ``face_recognition_models`` package."""
    return Path(str(importlib.resources.files("face_recognition_models") / "models" / PACKAGED_MODEL_NAME))


# ---------------------------------------------------------------------------------------------------
# Low-level reader


class _Reader:
    """Sequential reader of dlib's serialisation primitives; every failure names the file and offset."""

    def __init__(self, data: bytes, path: str | os.PathLike):
        self.data = data
        self.path = path
        self.pos = 0

    def fail(self, reason: str) -> DlibModelError:
        return DlibModelError(self.path, f"{reason} (at byte {self.pos} of {len(self.data)})")

    def take(self, count: int, what: str) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            remaining = len(self.data) - self.pos
            raise self.fail(f"file truncated: {what} needs {count} bytes, only {remaining} left")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def int(self, what: str) -> int:
        control = self.take(1, what)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"corrupt integer control byte 0x{control:02x} for {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def peek_int(self) -> int | None:
        start = self.pos
        try:
            return self.int("lookahead")
        except DlibModelError:
            return None
        finally:
            self.pos = start

    def float(self, what: str) -> float:
        mantissa = self.int(what)
        exponent = self.int(what)
        if exponent in _FLOAT_SPECIAL_EXPONENTS:
            return _FLOAT_SPECIAL_EXPONENTS[exponent]
        return math.ldexp(mantissa, exponent)

    def bool(self, what: str) -> bool:
        byte = self.take(1, what)
        if byte not in (b"0", b"1"):
            raise self.fail(f"corrupt bool {byte!r} for {what}")
        return byte == b"1"

    def string(self, what: str, max_length: int = 256) -> str:
        length = self.int(what)
        if not 0 <= length <= max_length:
            raise self.fail(f"implausible string length {length} for {what}")
        raw = self.take(length, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as err:
            raise self.fail(f"non-ASCII layer name {raw!r} for {what}") from err

    def expect_version(self, allowed: Sequence[int], what: str) -> int:
        version = self.int(what)
        if version not in allowed:
            raise self.fail(f"unexpected version {version} for {what} (expected one of {list(allowed)})")
        return version

    def tensor(self, what: str) -> np.ndarray:
        self.expect_version((2,), f"tensor of {what}")
        shape = tuple(self.int(f"tensor shape of {what}") for _ in range(4))
        if any(dim < 0 for dim in shape):
            raise self.fail(f"negative tensor shape {shape} for {what}")
        count = math.prod(shape)
        raw = self.take(4 * count, f"{count} float32 values of {what}")
        return np.frombuffer(raw, dtype="<f4").reshape(shape)

    def alias_tensor(self, what: str) -> tuple[int, int, int, int]:
        self.expect_version((1,), f"alias tensor of {what}")
        return tuple(self.int(f"alias shape of {what}") for _ in range(4))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------
# Layer descriptions read from the file


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # (out, in, kh, kw)
    bias: np.ndarray  # (out,)
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class _Affine:
    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class _Pool:
    kind: str  # "max_pool" or "avg_pool"
    size: tuple[int, int]  # (0, 0) = the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class _Fc:
    weight: np.ndarray  # (in, out), as dlib stores it


@dataclass(frozen=True)
class _Simple:
    kind: str  # "relu", "add_prev" or the tag/skip marker


@dataclass(frozen=True)
class _Input:
    mean_rgb: tuple[float, float, float]
    size: tuple[int, int]


_Layer = _Conv | _Affine | _Pool | _Fc | _Simple


def _read_lr_multipliers(reader: _Reader, what: str) -> None:
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        reader.float(what)


def _read_conv(reader: _Reader, name: str) -> _Conv:
    params = reader.tensor(name)
    num_filters = reader.int(name)
    kernel = (reader.int(name), reader.int(name))
    stride = (reader.int(name), reader.int(name))
    padding = (reader.int(name), reader.int(name))
    filters_shape = reader.alias_tensor(name)
    bias_shape = reader.alias_tensor(name)
    _read_lr_multipliers(reader, name)
    use_bias = True
    if name in ("con_5", "con_6"):
        use_bias = reader.bool(name)
    if name == "con_6" and reader.bool(name):
        raise reader.fail("con_6 with a fused relu is not supported")
    n_weights = math.prod(filters_shape)
    if filters_shape[0] != num_filters or filters_shape[2:] != kernel:
        raise reader.fail(f"{name}: filter shape {filters_shape} disagrees with {num_filters} x {kernel}")
    flat = params.reshape(-1)
    n_bias = math.prod(bias_shape) if use_bias else 0
    if flat.size != n_weights + n_bias:
        raise reader.fail(f"{name}: {flat.size} parameters, expected {n_weights} + {n_bias}")
    bias = flat[n_weights:] if use_bias else np.zeros(num_filters, dtype=np.float32)
    return _Conv(flat[:n_weights].reshape(filters_shape), bias, stride, padding)


def _read_affine(reader: _Reader, name: str) -> _Affine:
    params = reader.tensor(name).reshape(-1)
    gamma_shape = reader.alias_tensor(name)
    reader.alias_tensor(name)  # beta: same shape, right after gamma in params
    mode = reader.int(name)
    if name == "affine_2" and reader.bool(name):
        raise reader.fail("disabled affine layers are not supported")
    channels = math.prod(gamma_shape)
    if mode != 0:
        raise reader.fail(f"{name}: only CONV_MODE (0) affine layers are supported, found mode {mode}")
    if params.size != 2 * channels:
        raise reader.fail(f"{name}: {params.size} parameters, expected 2 x {channels}")
    return _Affine(params[:channels], params[channels:])


def _read_pool(reader: _Reader, name: str) -> _Pool:
    size = (reader.int(name), reader.int(name))
    stride = (reader.int(name), reader.int(name))
    padding = (reader.int(name), reader.int(name))
    return _Pool(name.removesuffix("_2"), size, stride, padding)


def _read_fc(reader: _Reader, name: str) -> _Fc:
    num_outputs = reader.int(name)
    num_inputs = reader.int(name)
    params = reader.tensor(name)
    weights_shape = reader.alias_tensor(name)
    reader.alias_tensor(name)  # biases
    bias_mode = reader.int(name)
    _read_lr_multipliers(reader, name)
    if name == "fc_3":
        reader.bool(name)  # use_bias; irrelevant without a bias
    if bias_mode != 1:  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        raise reader.fail(f"{name}: only fc_no_bias (bias mode 1) is supported, found mode {bias_mode}")
    if params.size != num_inputs * num_outputs or math.prod(weights_shape) != params.size:
        raise reader.fail(f"{name}: {params.size} parameters for {num_inputs} -> {num_outputs}")
    return _Fc(params.reshape(num_inputs, num_outputs))


def _read_relu(reader: _Reader, name: str) -> _Simple:
    if name == "relu_2" and reader.bool(name):
        raise reader.fail("disabled relu layers are not supported")
    return _Simple("relu")


_LAYER_READERS = {
    "con_4": _read_conv,
    "con_5": _read_conv,
    "con_6": _read_conv,
    "affine_": _read_affine,
    "affine_2": _read_affine,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
    "fc_3": _read_fc,
    "relu_": _read_relu,
    "relu_2": _read_relu,
    "add_prev_": lambda reader, name: _Simple("add_prev"),
}


def _read_layer_details(reader: _Reader) -> _Layer:
    name = reader.string("layer name")
    if name not in _LAYER_READERS:
        raise reader.fail(f"unsupported or corrupt layer type {name!r}")
    return _LAYER_READERS[name](reader, name)


def _skip_add_layer_state(reader: _Reader, version: int, holds_input: bool) -> None:
    """Skip the training state dlib stores after each layer's details (flags, gradients, caches)."""
    for flag in ("setup_called", "gradient_input_is_stale", "output_disabled"):
        reader.bool(flag)
    tensors = ("x_grad", "cached_output", "grad_final" if holds_input else "params_grad")
    if not holds_input and version == 1:
        tensors = tensors[:2]
    for name in tensors:
        reader.tensor(name)
    if holds_input and version >= 3:
        reader.int("sample_expansion_factor")


def _read_input(reader: _Reader) -> _Input:
    name = reader.string("input layer name")
    if name != "input_rgb_image_sized":
        raise reader.fail(f"expected the input layer 'input_rgb_image_sized', found {name!r}")
    mean_rgb = (reader.float("avg_red"), reader.float("avg_green"), reader.float("avg_blue"))
    size = (reader.int("input rows"), reader.int("input columns"))
    return _Input(mean_rgb, size)


def _parse_network(data: bytes, path: str | os.PathLike) -> tuple[_Input, list[_Layer]]:
    """Read a ``loss_metric`` network; return its input and its layers from the input up."""
    reader = _Reader(data, path)
    reader.expect_version((1,), "add_loss_layer")
    loss_name = reader.string("loss layer name")
    if loss_name == "loss_metric_2":
        reader.float("margin")
        reader.float("distance threshold")
    elif loss_name != "loss_metric_":
        raise reader.fail(f"expected a loss_metric network, found loss layer {loss_name!r}")
    # One version per layer wrapper, top down, until the input layer's name (a string, not a version).
    versions: list[int] = []
    while True:
        versions.append(reader.expect_version((1, 2, 3), "layer wrapper"))
        following = reader.peek_int()
        if following is None or following > 3:
            break
        if len(versions) > 10_000:
            raise reader.fail("no input layer found")
    if versions[-1] == 1:
        raise reader.fail("a tag layer directly on the input is not supported")
    network_input = _read_input(reader)
    layers: list[_Layer] = []
    for depth, version in enumerate(reversed(versions)):
        holds_input = depth == 0
        if version == 1 and not holds_input:
            layers.append(_Simple(_TAG_OR_SKIP))
            continue
        layers.append(_read_layer_details(reader))
        _skip_add_layer_state(reader, version, holds_input)
    if reader.pos != len(data):
        raise reader.fail(f"{len(data) - reader.pos} unexpected bytes after the network")
    return network_input, layers


# ---------------------------------------------------------------------------------------------------
# PyTorch modules


class Affine2d(nn.Module):
    """dlib's ``affine`` layer: a per-channel scale and shift (a frozen batch norm), trainable."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum of two (N, C, H, W) tensors, each zero-padded at the end to the larger."""
    target = [max(sa, sb) for sa, sb in zip(a.shape, b.shape, strict=True)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        if list(t.shape) == target:
            return t
        if t.shape[0] != target[0]:
            raise ValueError(f"batch sizes differ: {t.shape[0]} vs {target[0]}")
        return F.pad(t, (0, target[3] - t.shape[3], 0, target[2] - t.shape[2], 0, target[1] - t.shape[1]))

    return pad(a) + pad(b)


def _dlib_padding(kernel: int, stride: int) -> int:
    """dlib's default padding: none for strided layers, half the kernel otherwise."""
    return 0 if stride != 1 else kernel // 2


class ResidualBlock(nn.Module):
    """dlib's ``ares`` (stride 1) / ``ares_down`` (stride 2, 2x2 average-pool shortcut).

    relu(add_zero_padded(affine(conv3x3(relu(affine(conv3x3/stride(x))))), shortcut(x)))
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, _dlib_padding(3, stride))
        self.affine1 = Affine2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, _dlib_padding(3, 1))
        self.affine2 = Affine2d(out_channels)
        self.shortcut: nn.Module = nn.Identity() if stride == 1 else nn.AvgPool2d(stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(add_zero_padded(branch, self.shortcut(x)))


class DlibFaceResNet(nn.Module):
    """dlib's 29-conv face-recognition ResNet; ``forward`` gives the (N, 128) descriptor.

    The input is already normalised: ``(RGB - MEAN) / SCALE`` on 150x150 aligned chips, (N, 3, H, W)
    in RGB order (see ``normalise``). dlib does not L2-normalise the descriptor; neither does this.
    Weights start untrained; use ``load_dlib_resnet`` for dlib's.
    """

    MEAN: tuple[float, float, float] = (122.782, 117.001, 104.298)
    SCALE: float = 256.0
    INPUT_SIZE: int = 150

    def __init__(
        self,
        blocks: Sequence[tuple[int, int]] = DLIB_V1_BLOCKS,
        stem_channels: int = 32,
        stem_kernel: int = 7,
        feature_dim: int = 128,
    ):
        super().__init__()
        #: the constructor's arguments (a copy of this network is built from them)
        self.settings = {"blocks": tuple(tuple(b) for b in blocks), "stem_channels": stem_channels,
                         "stem_kernel": stem_kernel, "feature_dim": feature_dim}
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, stem_kernel, 2, _dlib_padding(stem_kernel, 2)),
            Affine2d(stem_channels),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        residual: list[nn.Module] = []
        channels = stem_channels
        for filters, stride in blocks:
            residual.append(ResidualBlock(channels, filters, stride))
            channels = filters
        self.blocks = nn.Sequential(*residual)
        self.pooled_dim = channels
        self.feature_dim = feature_dim
        self.fc = nn.Linear(channels, feature_dim, bias=False)

    @classmethod
    def normalise(cls, chips: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB chips (H, W, 3) or (N, H, W, 3) -> float32 network input (N, 3, H, W)."""
        array = torch.as_tensor(np.asarray(chips))
        if array.ndim == 3:
            array = array.unsqueeze(0)
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"expected RGB chips (H, W, 3) or (N, H, W, 3), got shape {tuple(array.shape)}")
        mean = torch.tensor(cls.MEAN, dtype=torch.float32)
        return ((array.float() - mean) / cls.SCALE).permute(0, 3, 1, 2).contiguous()

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised input -> (N, 256) globally averaged features (the fc's input)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a normalised (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised input -> (N, 128) face descriptor."""
        return self.fc(self.pooled(x))


# ---------------------------------------------------------------------------------------------------
# From parsed layers to module weights


def _kinds(layers: Sequence[_Layer]) -> list[str]:
    names = {_Conv: "con", _Affine: "affine", _Fc: "fc"}
    return [layer.kind if isinstance(layer, _Simple | _Pool) else names[type(layer)] for layer in layers]


_STEM = ["con", "affine", "relu", "max_pool"]
_BLOCK = [_TAG_OR_SKIP, "con", "affine", "relu", "con", "affine", "add_prev", "relu"]
_BLOCK_DOWN = [_TAG_OR_SKIP, "con", "affine", "relu", "con", "affine", _TAG_OR_SKIP, _TAG_OR_SKIP,
               "avg_pool", "add_prev", "relu"]  # fmt: skip
_HEAD = ["avg_pool", "fc"]


def _split_blocks(layers: list[_Layer], path: str | os.PathLike) -> list[list[_Layer]]:
    """Cut the residual part of the layer list into dlib ``ares`` / ``ares_down`` blocks."""
    kinds = _kinds(layers)
    blocks: list[list[_Layer]] = []
    start = 0
    while start < len(layers):
        for pattern in (_BLOCK, _BLOCK_DOWN):
            if kinds[start : start + len(pattern)] == pattern:
                blocks.append(layers[start : start + len(pattern)])
                start += len(pattern)
                break
        else:
            raise DlibModelError(
                path, f"layers {kinds[start : start + 11]} at residual position {start} match no ResNet block"
            )
    return blocks


def _copy(target: torch.Tensor, source: np.ndarray, what: str, path: str | os.PathLike) -> None:
    if tuple(target.shape) != source.shape:
        raise DlibModelError(path, f"{what}: file shape {source.shape} != module shape {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(torch.from_numpy(source.copy()))


def _load_conv(conv: nn.Conv2d, spec: _Conv, what: str, path: str | os.PathLike) -> None:
    if spec.stride != conv.stride or spec.padding != conv.padding:
        raise DlibModelError(
            path, f"{what}: stride/padding {spec.stride}/{spec.padding} != {conv.stride}/{conv.padding}"
        )
    _copy(conv.weight, spec.weight, f"{what} weight", path)
    _copy(conv.bias, spec.bias, f"{what} bias", path)


def _load_affine(affine: Affine2d, spec: _Affine, what: str, path: str | os.PathLike) -> None:
    _copy(affine.weight, spec.gamma, f"{what} gamma", path)
    _copy(affine.bias, spec.beta, f"{what} beta", path)


def _check_pool(
    spec: _Pool, size: tuple[int, int], stride: tuple[int, int], what: str, path: str | os.PathLike
) -> None:
    if (spec.size, spec.stride, spec.padding) != (size, stride, (0, 0)):
        raise DlibModelError(
            path, f"{what}: pool {spec.size} stride {spec.stride} padding {spec.padding} is not supported"
        )


def _build(network_input: _Input, layers: list[_Layer], path: str | os.PathLike) -> DlibFaceResNet:
    """Build a DlibFaceResNet shaped like the file's layers and copy the weights in."""
    size = DlibFaceResNet.INPUT_SIZE
    if network_input.size != (size, size):
        raise DlibModelError(path, f"input size {network_input.size}, expected ({size}, {size})")
    if not np.allclose(network_input.mean_rgb, DlibFaceResNet.MEAN, atol=1e-3):
        raise DlibModelError(path, f"input mean {network_input.mean_rgb} != {DlibFaceResNet.MEAN}")
    kinds = _kinds(layers)
    if kinds[: len(_STEM)] != _STEM or kinds[-len(_HEAD) :] != _HEAD:
        raise DlibModelError(path, f"layer sequence {kinds[:4]} ... {kinds[-2:]} is not dlib's face ResNet")
    stem_conv, stem_affine, _, stem_pool = layers[: len(_STEM)]
    head_pool, fc = layers[-len(_HEAD) :]
    blocks = _split_blocks(layers[len(_STEM) : -len(_HEAD)], path)
    block_shapes = [(block[1].weight.shape[0], block[1].stride[0]) for block in blocks]
    network = DlibFaceResNet(
        blocks=block_shapes,
        stem_channels=stem_conv.weight.shape[0],
        stem_kernel=stem_conv.weight.shape[2],
        feature_dim=fc.weight.shape[1],
    )
    _load_conv(network.stem[0], stem_conv, "stem conv", path)
    _load_affine(network.stem[1], stem_affine, "stem affine", path)
    _check_pool(stem_pool, (3, 3), (2, 2), "stem max_pool", path)
    for index, (module, block) in enumerate(zip(network.blocks, blocks, strict=True)):
        what = f"block {index}"
        _load_conv(module.conv1, block[1], f"{what} conv1", path)
        _load_affine(module.affine1, block[2], f"{what} affine1", path)
        _load_conv(module.conv2, block[4], f"{what} conv2", path)
        _load_affine(module.affine2, block[5], f"{what} affine2", path)
        if len(block) == len(_BLOCK_DOWN):
            stride = block[1].stride
            _check_pool(block[8], stride, stride, f"{what} shortcut", path)
    _check_pool(head_pool, (0, 0), (1, 1), "final avg_pool_everything", path)
    _copy(network.fc.weight, np.ascontiguousarray(fc.weight.T), "fc weight", path)
    return network


def load_dlib_resnet(path: str | Path | None = None, sha256: str | None = None) -> DlibFaceResNet:
    """Parse a dlib face-recognition ResNet ``.dat`` file into an eval-mode DlibFaceResNet.

    ``path=None`` loads the packaged model and checks its sha256; for another file pass ``sha256`` to
    check it. Raises DlibModelError naming the file if it is missing, truncated or not this network.
    """
    if path is None:
        path, sha256 = packaged_model_path(), sha256 or PACKAGED_MODEL_SHA256
    path = Path(path)
    if not path.is_file():
        raise DlibModelError(path, "file not found")
    if sha256:
        verify_sha256(path, sha256)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _PARSED:
        network = _build(*_parse_network(path.read_bytes(), path), path)
        _PARSED.clear()
        _PARSED[key] = (network.settings, {name: t.detach().clone() for name, t in network.state_dict().items()})
        return network.eval()
    # parsed before in this process: the same network built again (its random init draws what a first load draws,
    # so a seeded run does not depend on what ran before it in the process), the file's tensors copied in
    settings, state = _PARSED[key]
    network = DlibFaceResNet(**settings)
    network.load_state_dict(state, strict=True)
    return network.eval()


#: the last file parsed in this process, by (path, size, modification time): the network's constructor
#: arguments and tensors (a changed file is parsed again)
_PARSED: dict[tuple[str, int, int], tuple[dict, dict[str, torch.Tensor]]] = {}


# ---------------------------------------------------------------------------------------------------
# Registration: DTL2 features `descriptor` (128-D, the network's output) or `pooled` (256-D, the fc's input)


def _pooled(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.pooled(x)


def _stages(net: nn.Module) -> list[list[nn.Module]]:
    """Stem, then one stage per run of blocks that starts at a downsampling block."""
    stages: list[list[nn.Module]] = [[net.stem]]
    for index, block in enumerate(net.blocks):
        downsamples = block.conv1.stride != (1, 1)
        if index == 0 or downsamples:
            stages.append([])
        stages[-1].append(block)
    return stages


@register_backbone("dlib_resnet", feature_layers={"descriptor": HEAD_OUTPUT, "pooled": PENULTIMATE})
@register_architecture("dlib_resnet", head="fc", penultimate=_pooled, stages=_stages, read=load_dlib_resnet)
def dlib_resnet(num_classes: int) -> nn.Module:
    return DlibFaceResNet(feature_dim=num_classes)
