"""Weight specs (one YAML per weight file) and verified loading: path -> cache -> package -> download.

A spec is package data, ``facediag/models/specs/weights/<backbone>_<dataset>.yaml`` (or a ``weights:`` entry of a
backbone's own YAML, :mod:`facediag.models.registry`), and says where a
weight file comes from (file name, URLs, the Python package that ships it), how to check it (sha256, size), how the
network expects its input (size, channel order, value range, mean, std) and how the file's state-dict
keys map onto this package's modules (``key_map``: ordered ``[regex, replacement]`` pairs; a key takes
the first rule that matches). ``weights: none`` needs no file: random initialisation.

Every file is checked against its sha256 before use (torch hub never re-checks a cached file), and
torch files load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from facediag.core.config import weights_dir
from facediag.core.download import ChecksumError, DownloadError, download_verified, verify_sha256

logger = logging.getLogger(__name__)

NO_WEIGHTS = "none"
#: a torch state dict, or no file; other formats are read by their architecture (``Architecture.read``)
TORCH = "torch"
#: datasets and formats are lowercase names
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CHANNEL_ORDERS = ("RGB", "BGR")
VALUE_RANGES = ("0-1", "0-255")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WeightsNotFoundError(FileNotFoundError):
    """A weight file is neither at the given path, nor in the cache, nor downloadable right now."""


class UnknownWeightsError(ValueError):
    """A (backbone, weights) pair without a spec; the message lists the valid pairs."""


class WeightsLayoutError(ValueError):
    """A state dict whose keys or shapes do not fit the network; the message names file, keys and shapes."""


class BadWeightsError(ValueError):
    """A weight file that cannot be read as weights (not a state dict, unsafe pickle, truncated)."""


@dataclass(frozen=True)
class WeightSpec:
    """Everything needed to find, verify, load and feed one pretrained weight file."""

    backbone: str
    dataset: str
    arch: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    value_range: str = "0-1"
    format: str = "torch"
    file: str | None = None
    urls: tuple[str, ...] = ()
    package: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    num_classes: int | None = None
    key_map: tuple[tuple[str, str], ...] = ()
    description: str = ""
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = self.source or f"spec {self.backbone}/{self.dataset}"
        problems = []
        if not NAME.match(self.dataset):
            problems.append(f"dataset {self.dataset!r} is not a lowercase name (letters, digits, _)")
        if not NAME.match(self.format):
            problems.append(f"format {self.format!r} is not a lowercase name ({TORCH}, {NO_WEIGHTS}, ...)")
        if self.channel_order not in CHANNEL_ORDERS:
            problems.append(f"channel_order {self.channel_order!r} not one of {CHANNEL_ORDERS}")
        if self.value_range not in VALUE_RANGES:
            problems.append(f"value_range {self.value_range!r} not one of {VALUE_RANGES}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append(f"mean {self.mean} / std {self.std} must be 3 numbers each, std > 0")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            problems.append(f"sha256 {self.sha256!r} is not 64 lowercase hex digits")
        if self.format != NO_WEIGHTS and not self.file:
            problems.append("a weight file name (`file`) is required")
        for pattern, _ in self.key_map:
            try:
                re.compile(pattern)
            except re.error as err:
                problems.append(f"key_map pattern {pattern!r}: {err}")
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems))

    @property
    def needs_file(self) -> bool:
        return self.format != NO_WEIGHTS

    @property
    def pair(self) -> tuple[str, str]:
        return self.backbone, self.dataset

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: Path | None = None) -> WeightSpec:
        """Build from a YAML mapping; unknown fields are an error naming the file."""
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source or 'weight spec'}: unknown fields {unknown}; known: {sorted(known)}")
        data = dict(values)
        for name in ("mean", "std"):
            if name in data:
                data[name] = tuple(float(v) for v in data[name])
        data["urls"] = tuple(data.get("urls") or ())
        data["key_map"] = tuple((str(p), str(r)) for p, r in (data.get("key_map") or ()))
        try:
            return cls(**data, source=source)
        except TypeError as err:
            raise ValueError(f"{source or 'weight spec'}: {err}") from err


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding one mapping (a weight or backbone spec); errors name the file."""
    try:
        values = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C: 10x faster
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read {what}: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a {what} must be a mapping, got {type(values).__name__}")
    return values


def read_spec(path: str | os.PathLike) -> WeightSpec:
    """Parse one spec YAML file; errors name the file."""
    path = Path(path)
    spec = WeightSpec.from_mapping(read_mapping(path, "weight spec"), source=path)
    if path.stem != f"{spec.backbone}_{spec.dataset}":
        raise ValueError(f"{path}: file name must be {spec.backbone}_{spec.dataset}.yaml")
    return spec


#: the weight cache of a call without ``cache_dir``: ``<paths.cache_dir>/weights`` (facediag.core.config.weights_dir)
default_cache_dir = weights_dir


def packaged_file(spec: WeightSpec) -> Path | None:
    """The copy of the file shipped inside an installed package (``package: pkg/sub/folder``), if any."""
    if not spec.package or not spec.file:
        return None
    top, _, folder = spec.package.partition("/")
    module = importlib.util.find_spec(top)
    if module is None or not module.submodule_search_locations:
        return None
    path = Path(next(iter(module.submodule_search_locations))) / folder / spec.file
    return path if path.is_file() else None


def locate_weight_file(spec: WeightSpec, path: str | os.PathLike | None = None,
                       cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Where the file is now (explicit path, cache folder, package) without checking it; None if absent."""
    if path is not None:
        return Path(path).expanduser() if Path(path).expanduser().is_file() else None
    cached = Path(cache_dir or default_cache_dir()).expanduser() / str(spec.file)
    if cached.is_file():
        return cached
    return packaged_file(spec)


def resolve_weight_file(
    spec: WeightSpec,
    path: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
) -> Path:
    """Find the spec's file and verify its sha256: explicit path -> cache -> package -> download -> error.

    ``sha256`` (the user's pin) overrides the spec's. Without any expected checksum the file's sha256
    is logged so that the user can pin it. Raises WeightsNotFoundError naming the file, its source URLs
    and the folder to put it in; ChecksumError (from facediag.core.download) when the bytes differ.
    """
    if not spec.needs_file:
        raise ValueError(f"weights {spec.dataset!r} for {spec.backbone} has no file (random init)")
    expected = (sha256 or spec.sha256 or "").lower() or None
    cache = Path(cache_dir or default_cache_dir()).expanduser()
    if path is not None and not Path(path).expanduser().is_file():
        raise WeightsNotFoundError(f"weights.path={path} does not exist (weights for {_describe(spec)})")
    found = locate_weight_file(spec, path, cache)
    if found is None and download:
        if not spec.urls:
            raise WeightsNotFoundError(_placement_message(spec, cache, "it has no download URL; "))
        try:
            found = download_verified(spec.urls, cache / str(spec.file), expected)
        except DownloadError as err:
            raise WeightsNotFoundError(f"{_placement_message(spec, cache)}\ndownload failed: {err}") from err
    if found is None:
        raise WeightsNotFoundError(_placement_message(spec, cache))
    size = found.stat().st_size
    if sha256 is None and spec.size_bytes is not None and size != spec.size_bytes:
        raise ChecksumError(f"{found}: {size} bytes, expected {spec.size_bytes} ({_describe(spec)})")
    actual = verify_sha256(found, expected)
    if expected is None:
        logger.warning(
            "%s: no sha256 pinned for %s; this file's sha256 is %s - pin it with weights.sha256=%s",
            found, _describe(spec), actual, actual,
        )
    return found


def _describe(spec: WeightSpec) -> str:
    return f"backbone={spec.backbone} weights={spec.dataset}"


def _placement_message(spec: WeightSpec, cache: Path, why: str = "") -> str:
    urls = " or ".join(spec.urls) if spec.urls else "(no public URL)"
    return (
        f"weight file {spec.file} for {_describe(spec)} not found. {why}Download it from {urls} "
        f"and put it in {cache}/ (or pass weights.path=/path/to/{spec.file}), "
        f"or set weights.download=true to fetch it into that folder."
    )


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` to a flat {key: tensor} dict; BadWeightsError otherwise."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types; all mean "not usable weights"
        raise BadWeightsError(f"{path}: cannot load as weights (weights_only=True): {err}") from err
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        kind = type(loaded).__name__
        raise BadWeightsError(f"{path}: expected a state dict of {{name: tensor}}, got {kind}")
    return dict(loaded)


def apply_key_map(state_dict: Mapping[str, torch.Tensor],
                  key_map: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Rename keys by the first matching ``(regex, replacement)`` rule; two keys onto one is an error."""
    rules = [(re.compile(pattern), replacement) for pattern, replacement in key_map]
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in rules:
            if pattern.search(key):
                new_key = pattern.sub(replacement, key, count=1)
                break
        if new_key in renamed:
            raise WeightsLayoutError(f"key_map sends both {origin[new_key]!r} and {key!r} to {new_key!r}")
        renamed[new_key], origin[new_key] = value, key
    return renamed


def load_state_dict_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, assign: bool = False
) -> None:
    """Load exactly: every key present, no extra key, every shape equal; else WeightsLayoutError.

    Batch-norm ``num_batches_tracked`` counters may be absent (older files lack them). ``assign``: the file's
    tensors (cast to the network's dtypes) become the module's, as for a network built on the meta device.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k}: file {tuple(v.shape)} vs network {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[:5]})")
        network = type(module).__name__
        raise WeightsLayoutError(f"{source}: state dict does not fit {network}: " + "; ".join(parts))
    filled = {k: v.to(expected[k].dtype) for k, v in state_dict.items()} if assign else dict(state_dict)
    for key in expected:
        if key not in filled:  # only num_batches_tracked can be missing here
            filled[key] = torch.zeros((), dtype=torch.long) if expected[key].is_meta else expected[key]
    module.load_state_dict(filled, strict=True, assign=assign)
