"""A weight spec (facediag.models.weights) that is wrong says so with its file and every problem at once; a spec
without a file or a URL says what to do; tiny spec YAMLs and state dicts written by the test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facediag.models.weights import (
    WeightsNotFoundError,
    WeightSpec,
    load_torch_state_dict,
    packaged_file,
    read_mapping,
    read_spec,
    resolve_weight_file,
)

GOOD = {"backbone": "tiny", "dataset": "toyset", "arch": "tiny", "input_size": 32, "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25], "file": "tiny_toyset.pth"}  # fmt: skip


def test_a_spec_lists_every_problem_with_its_source():
    bad = {**GOOD, "dataset": "Toy-Set", "format": "Torch", "channel_order": "RGBA", "value_range": "0-2",
           "std": [0.2, 0.0, 0.2], "sha256": "ABC", "key_map": [["(unclosed", "x"]]}  # fmt: skip
    with pytest.raises(ValueError) as caught:
        WeightSpec.from_mapping(bad, source=Path("specs/tiny_toyset.yaml"))
    message = str(caught.value)
    assert message.startswith("specs/tiny_toyset.yaml: ")
    for problem in ("dataset 'Toy-Set' is not a lowercase name", "format 'Torch' is not a lowercase name",
                    "channel_order 'RGBA' not one of", "value_range '0-2' not one of",
                    "std (0.2, 0.0, 0.2) must be 3 numbers each, std > 0", "sha256 'ABC' is not 64 lowercase hex",
                    "key_map pattern '(unclosed'"):  # fmt: skip
        assert problem in message
    with pytest.raises(ValueError, match="spec tiny/toyset: a weight file name .`file`. is required"):
        WeightSpec.from_mapping({k: v for k, v in GOOD.items() if k != "file"})
    with pytest.raises(ValueError, match=r"tiny.yaml: .*missing 1 required positional argument: 'arch'"):
        WeightSpec.from_mapping({k: v for k, v in GOOD.items() if k != "arch"}, source=Path("tiny.yaml"))


def test_a_spec_file_must_hold_one_mapping_and_be_named_after_its_pair(tmp_path):
    import yaml

    unreadable = tmp_path / "broken.yaml"
    unreadable.write_text("a: [unclosed\n")
    with pytest.raises(ValueError, match=f"{unreadable}: cannot read weight spec"):
        read_mapping(unreadable, "weight spec")
    listed = tmp_path / "listed.yaml"
    listed.write_text("- one\n- two\n")
    with pytest.raises(ValueError, match=f"{listed}: a weight spec must be a mapping, got list"):
        read_mapping(listed, "weight spec")
    misnamed = tmp_path / "tiny_other.yaml"
    misnamed.write_text(yaml.safe_dump(GOOD))
    with pytest.raises(ValueError, match=f"{misnamed}: file name must be tiny_toyset.yaml"):
        read_spec(misnamed)
    named = tmp_path / "tiny_toyset.yaml"
    named.write_text(yaml.safe_dump(GOOD))
    assert read_spec(named).pair == ("tiny", "toyset") and read_spec(named).source == named


def test_a_spec_without_file_or_url_says_what_to_do(tmp_path):
    no_file = WeightSpec.from_mapping({**GOOD, "format": "none", "file": None})
    with pytest.raises(ValueError, match="weights 'toyset' for tiny has no file .random init."):
        resolve_weight_file(no_file)
    spec = WeightSpec.from_mapping({**GOOD, "package": "no_such_package_xyz/models"})
    assert packaged_file(spec) is None
    with pytest.raises(WeightsNotFoundError, match=f"it has no download URL; .* put it in {tmp_path}/"):
        resolve_weight_file(spec, download=True, cache_dir=tmp_path)


def test_a_lightning_checkpoint_s_state_dict_is_read_and_other_objects_are_refused(tmp_path):
    checkpoint = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"fc.weight": torch.ones(2, 3)}, "epoch": 3}, checkpoint)
    assert list(load_torch_state_dict(checkpoint)) == ["fc.weight"]
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(ValueError, match=f"{listed}"):
        load_torch_state_dict(listed)
