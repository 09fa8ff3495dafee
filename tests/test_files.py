"""Atomic cache writes, configuration hashes and the class index."""

from pathlib import Path

import numpy as np
import pytest

from facediag.core.files import atomic_write, config_hash
from facediag.core.labels import class_index, encode_labels


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path: Path):
    target = tmp_path / "sub" / "entry.npy"

    def broken(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert list((tmp_path / "sub").iterdir()) == []
    atomic_write(target, lambda handle: np.save(handle, np.arange(3)))
    assert np.load(target).tolist() == [0, 1, 2] and [p.name for p in target.parent.iterdir()] == ["entry.npy"]


def test_config_hash_ignores_key_order_and_sees_every_value():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1, "b": [1, 2]}) != config_hash({"a": 1, "b": [2, 1]})
    assert len(config_hash({})) == 16


def test_labels_follow_the_class_order_and_unknown_labels_are_named():
    assert class_index(["male", "female"]) == {"male": 0, "female": 1}
    assert encode_labels(["female", "male", "female"], ["male", "female"]).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match=r"\['other'\] are not among the classes"):
        encode_labels(["male", "other"], ["male", "female"])
