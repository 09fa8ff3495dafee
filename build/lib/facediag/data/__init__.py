"""Datasets, manifests, leakage-free splits and the Lightning data module."""

from facediag.data.records import Record, build_manifest, usable
from facediag.data.splits import LeakError, check_no_leak, make_split

__all__ = ["LeakError", "Record", "build_manifest", "check_no_leak", "make_split", "usable"]
