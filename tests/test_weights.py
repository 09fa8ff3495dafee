"""Weight specs and verified loading: checksums, placement messages, key maps, real HTTP downloads."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from facediag.core.download import ChecksumError
from facediag.models import (
    BadWeightsError,
    UnknownWeightsError,
    WeightsLayoutError,
    WeightsNotFoundError,
    WeightSpec,
    available_pairs,
    create,
    list_specs,
    load_spec,
    resolve_weight_file,
)
from facediag.models.weights import (
    NAME,
    apply_key_map,
    default_cache_dir,
    load_state_dict_strict,
    load_torch_state_dict,
    packaged_file,
)

torch.set_num_threads(1)


def tiny_state_dict() -> dict[str, torch.Tensor]:
    return {"layer.weight": torch.arange(6, dtype=torch.float32).view(2, 3), "layer.bias": torch.ones(2)}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "tiny.pth"
    path.parent.mkdir()
    torch.save(tiny_state_dict(), path)
    return path


def tiny_spec(file: Path, sha256: str | None, urls: tuple[str, ...] = ()) -> WeightSpec:
    return WeightSpec(
        backbone="resnet50", dataset="imagenet", arch="resnet50", input_size=224,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), file=file.name, urls=urls, sha256=sha256,
    )


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``<tmp>/served``; yields (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- the spec files
def test_every_spec_file_parses_with_a_valid_checksum_or_none():
    specs = list_specs()
    assert len(specs) >= 16
    for spec in specs:
        assert NAME.match(spec.dataset)
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        if spec.needs_file:
            assert spec.file and (spec.urls or spec.package), spec.source


def test_torch_hub_file_names_carry_the_prefix_of_their_pinned_sha256():
    for backbone in ("alexnet", "vgg16", "resnet50"):
        spec = load_spec(backbone, "imagenet")
        prefix = re.search(r"-([0-9a-f]{8})\.pth$", spec.file).group(1)
        assert spec.sha256.startswith(prefix)
        assert spec.urls[0].endswith(spec.file)


def test_every_backbone_has_random_init_and_the_papers_pairs_exist():
    pairs = set(available_pairs())
    for backbone in ("alexnet", "vgg16", "resnet50", "senet50", "dlib_resnet", "efficientnet_lite0"):
        assert (backbone, "none") in pairs
    for pair in [("vgg16", "vggface"), ("resnet50", "vggface2"), ("resnet50", "ms1m_vggface2"),
                 ("senet50", "vggface2"), ("senet50", "ms1m_vggface2"), ("dlib_resnet", "dlib_faces")]:
        assert pair in pairs


def test_unknown_pair_is_refused_with_the_list_of_valid_pairs():
    with pytest.raises(UnknownWeightsError, match=r"alexnet/imagenet.*vgg16/vggface"):
        load_spec("alexnet", "vggface2")


def test_packaged_files_are_found_and_match_their_pinned_checksum():
    for backbone, dataset in [("dlib_resnet", "dlib_faces"), ("efficientnet_lite0", "imagenet")]:
        spec = load_spec(backbone, dataset)
        path = packaged_file(spec)
        assert path is not None and path.stat().st_size == spec.size_bytes
        assert sha256_of(path) == spec.sha256


def test_default_cache_dir_follows_facediag_cache_dir(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("FACEDIAG_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "weights"


# --------------------------------------------------------------------------- resolution order and checks
def test_missing_file_message_names_the_file_its_url_and_the_folder(tmp_path: Path):
    spec = load_spec("resnet50", "ms1m_vggface2")
    cache = tmp_path / "cache"
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve_weight_file(spec, cache_dir=cache)
    message = str(caught.value)
    assert "resnet50_ft_dag.pth" in message
    assert spec.urls[0] in message
    assert f"{cache}/" in message
    assert "weights.download=true" in message


def test_missing_explicit_path_is_named(tmp_path: Path):
    spec = load_spec("alexnet", "imagenet")
    with pytest.raises(WeightsNotFoundError, match="nowhere.pth does not exist"):
        resolve_weight_file(spec, path=tmp_path / "nowhere.pth", cache_dir=tmp_path)


def test_sha256_mismatch_is_refused_for_a_cached_file(tiny_file: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tiny_file.name).write_bytes(tiny_file.read_bytes())
    spec = tiny_spec(tiny_file, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="does not match"):
        resolve_weight_file(spec, cache_dir=cache)


def test_sha256_mismatch_is_refused_for_an_explicit_path_and_a_user_pin_is_honoured(tiny_file: Path):
    good = sha256_of(tiny_file)
    with pytest.raises(ChecksumError):
        resolve_weight_file(tiny_spec(tiny_file, sha256="f" * 64), path=tiny_file)
    assert resolve_weight_file(tiny_spec(tiny_file, sha256="f" * 64), path=tiny_file, sha256=good) == tiny_file
    with pytest.raises(ChecksumError):
        resolve_weight_file(tiny_spec(tiny_file, sha256=good), path=tiny_file, sha256="e" * 64)


def test_wrong_size_is_refused_before_hashing(tiny_file: Path):
    spec = dataclasses.replace(tiny_spec(tiny_file, sha256=None), size_bytes=tiny_file.stat().st_size + 1)
    with pytest.raises(ChecksumError, match="bytes, expected"):
        resolve_weight_file(spec, path=tiny_file)


def test_unpinned_file_is_used_and_its_sha256_logged_for_pinning(tiny_file: Path, caplog):
    with caplog.at_level("WARNING"):
        assert resolve_weight_file(tiny_spec(tiny_file, sha256=None), path=tiny_file) == tiny_file
    assert sha256_of(tiny_file) in caplog.text


def test_explicit_path_wins_over_the_cache(tiny_file: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tiny_file.name).write_bytes(b"not the same bytes")
    spec = tiny_spec(tiny_file, sha256=sha256_of(tiny_file))
    assert resolve_weight_file(spec, path=tiny_file, cache_dir=cache) == tiny_file
    with pytest.raises(ChecksumError):
        resolve_weight_file(spec, cache_dir=cache)


# --------------------------------------------------------------------------- real downloads
def test_download_over_http_lands_in_the_cache_and_loads(http_server, tiny_file: Path, tmp_path: Path):
    base, served = http_server
    (served / tiny_file.name).write_bytes(tiny_file.read_bytes())
    cache = tmp_path / "cache"
    spec = tiny_spec(tiny_file, sha256=sha256_of(tiny_file), urls=(f"{base}/{tiny_file.name}",))
    with pytest.raises(WeightsNotFoundError):  # download is off by default
        resolve_weight_file(spec, cache_dir=cache)
    path = resolve_weight_file(spec, download=True, cache_dir=cache)
    assert path == cache / tiny_file.name
    loaded = load_torch_state_dict(path)
    assert torch.equal(loaded["layer.weight"], tiny_state_dict()["layer.weight"])


def test_corrupted_download_is_refused_and_leaves_nothing_in_the_cache(http_server, tiny_file, tmp_path):
    base, served = http_server
    corrupted = bytearray(tiny_file.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    (served / tiny_file.name).write_bytes(bytes(corrupted))
    cache = tmp_path / "cache"
    spec = tiny_spec(tiny_file, sha256=sha256_of(tiny_file), urls=(f"{base}/{tiny_file.name}",))
    with pytest.raises(WeightsNotFoundError, match="does not match"):
        resolve_weight_file(spec, download=True, cache_dir=cache)
    assert not any(cache.iterdir())


def test_download_falls_back_to_the_next_url(http_server, tiny_file: Path, tmp_path: Path):
    base, served = http_server
    (served / tiny_file.name).write_bytes(tiny_file.read_bytes())
    urls = (f"{base}/missing/{tiny_file.name}", f"{base}/{tiny_file.name}")
    spec = tiny_spec(tiny_file, sha256=sha256_of(tiny_file), urls=urls)
    assert resolve_weight_file(spec, download=True, cache_dir=tmp_path / "cache").is_file()


@pytest.mark.slow
def test_create_downloads_real_efficientnet_weights_over_http(http_server, tmp_path: Path):
    base, served = http_server
    packaged = load_spec("efficientnet_lite0", "imagenet")
    (served / packaged.file).write_bytes(packaged_file(packaged).read_bytes())
    spec = dataclasses.replace(packaged, package=None, urls=(f"{base}/{packaged.file}",))
    model = create("efficientnet_lite0", spec, download=True, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / packaged.file).is_file()
    reference = create("efficientnet_lite0", "imagenet")
    expected = reference.state_dict()
    assert list(model.state_dict()) == list(expected)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


# --------------------------------------------------------------------------- reading and mapping state dicts
def test_unsafe_pickle_is_refused_by_weights_only_loading(tmp_path: Path):
    path = tmp_path / "evil.pth"
    torch.save({"layer.weight": torch.zeros(1), "payload": Counter(a=1)}, path)
    with pytest.raises(BadWeightsError, match="evil.pth"):
        load_torch_state_dict(path)


def test_non_state_dict_and_truncated_files_are_refused(tmp_path: Path, tiny_file: Path):
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(BadWeightsError, match="expected a state dict"):
        load_torch_state_dict(listed)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_file.read_bytes()[:40])
    with pytest.raises(BadWeightsError, match="truncated.pth"):
        load_torch_state_dict(truncated)


def test_key_map_renames_by_the_first_matching_rule_and_refuses_collisions():
    state = {"conv3_2_1x1_reduce_bn.weight": torch.zeros(1), "conv1_7x7_s2.weight": torch.zeros(1),
             "classifier.bias": torch.zeros(1)}
    rules = (
        (r"^conv1_7x7_s2\.", "conv1."),
        (r"^conv(\d)_(\d+)_1x1_(reduce|increase|proj)(_bn)?\.", r"conv\1.\2.\3\4."),
        (r"^conv", "never."),
    )
    assert set(apply_key_map(state, rules)) == {"conv3.2.reduce_bn.weight", "conv1.weight", "classifier.bias"}
    with pytest.raises(WeightsLayoutError, match="both"):
        apply_key_map({"a.w": torch.zeros(1), "b.w": torch.zeros(1)}, [(r"^[ab]\.", "c.")])


def test_strict_loading_names_missing_unexpected_and_misshapen_keys():
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    good = {"0.weight": torch.ones(2, 3), "0.bias": torch.ones(2)}
    load_state_dict_strict(module, good, source="good.pth")
    assert torch.equal(module[0].weight, torch.ones(2, 3))
    with pytest.raises(WeightsLayoutError, match=r"bad.pth.*0.weight: file \(3, 3\) vs network \(2, 3\)"):
        load_state_dict_strict(module, {"0.weight": torch.ones(3, 3), "0.bias": torch.ones(2)}, "bad.pth")
    with pytest.raises(WeightsLayoutError, match=r"missing keys.*0.bias.*unexpected keys.*extra"):
        load_state_dict_strict(module, {"0.weight": torch.ones(2, 3), "extra": torch.ones(1)}, "bad.pth")


def test_spec_with_bad_fields_is_refused_naming_the_problem():
    with pytest.raises(ValueError, match="channel_order"):
        dataclasses.replace(load_spec("alexnet", "imagenet"), channel_order="RBG")
    with pytest.raises(ValueError, match="sha256"):
        dataclasses.replace(load_spec("alexnet", "imagenet"), sha256="abc")
    with pytest.raises(ValueError, match="unknown fields"):
        WeightSpec.from_mapping({"backbone": "alexnet", "colour": "red"})
