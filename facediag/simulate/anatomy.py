"""Named facial points on the two landmark schemes a source can have, and the face frame built from them.

London's ``.tem`` files hold the Face Research Lab's 189 hand-placed points; a user's photos get dlib's 68
(:mod:`facediag.preprocess`). Every simulated change is defined on the named points below, so "1 SD" of a
measure means the same thing on either scheme. ``_l`` / ``_r``: the point on the image's left / right.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: named point -> landmark indices averaged (Face Research Lab 189-point template, webmorph "FRL")
FRL189: dict[str, tuple[int, ...]] = {
    "pupil_l": (0,), "pupil_r": (1,),
    "en_l": (22,), "en_r": (23,),          # endocanthion (inner eye corner)
    "ex_l": (18,), "ex_r": (27,),          # exocanthion (outer eye corner)
    "ul_l": (19, 20, 21), "ul_r": (24, 25, 26),   # upper eyelid margin (its middle points)
    "ll_l": (28, 29, 30), "ll_r": (31, 32, 33),   # lower eyelid margin
    "sn": (55,),                           # subnasale (bottom centre of the nose)
    "st": (96, 101),                       # stomion (where the lips meet)
    "ch_l": (87,), "ch_r": (93,),          # cheilion (mouth corner)
    "me": (129,),                          # menton (bottom of the chin)
}  # fmt: skip
#: the same names on dlib's 68-point scheme (iBUG 300-W numbering, 0-based); pupils: the eye contour's centre
DLIB68: dict[str, tuple[int, ...]] = {
    "pupil_l": tuple(range(36, 42)), "pupil_r": tuple(range(42, 48)),
    "en_l": (39,), "en_r": (42,),
    "ex_l": (36,), "ex_r": (45,),
    "ul_l": (37, 38), "ul_r": (43, 44),
    "ll_l": (40, 41), "ll_r": (46, 47),
    "sn": (33,),
    "st": (62, 66),
    "ch_l": (48,), "ch_r": (54,),
    "me": (8,),
}  # fmt: skip
SCHEMES: dict[int, dict[str, tuple[int, ...]]] = {189: FRL189, 68: DLIB68}


class SchemeError(ValueError):
    """Landmarks of a count no scheme has."""


#: per scheme, each name's indices as an array (simulating a tree names points some 10^5 times)
_INDEX_ARRAYS = {count: {name: np.array(indices) for name, indices in scheme.items()}
                 for count, scheme in SCHEMES.items()}


class NamedPoints(Mapping[str, np.ndarray]):
    """name -> (2,) position (the mean of the name's landmarks), each worked out when first read: a measure reads
    a few of the scheme's names, and the simulator's Newton steps read some 10^5 of them per tree."""

    __slots__ = ("_points", "_scheme", "_values")

    def __init__(self, points: np.ndarray, scheme: Mapping[str, np.ndarray]) -> None:
        self._points, self._scheme, self._values = points, scheme, {}

    def __getitem__(self, name: str) -> np.ndarray:
        value = self._values.get(name)
        if value is None:
            indices = self._scheme[name]
            # sum / count is numpy's mean bit for bit, without its per-call overhead
            value = self._values[name] = self._points[indices].sum(axis=0) / len(indices)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._scheme)

    def __len__(self) -> int:
        return len(self._scheme)


def named_points(points: np.ndarray) -> NamedPoints:
    """name -> (2,) position for an (N, 2) array of 189 or 68 landmarks (the mean of the name's points)."""
    points = np.array(points, dtype=float)  # a copy: the positions are read later, from the points as they are now
    scheme = _INDEX_ARRAYS.get(len(points))
    if scheme is None:
        raise SchemeError(f"{len(points)} landmarks: expected 189 (Face Research Lab .tem) or 68 (dlib)")
    return NamedPoints(points, scheme)


def read_tem(path: str | os.PathLike) -> np.ndarray:
    """(N, 2) points of a webmorph ``.tem`` file: the count on the first line, then ``x<TAB>y`` per point."""
    lines = Path(path).read_text().split("\n")
    try:
        count = int(lines[0])
        points = np.array([[float(v) for v in line.split()[:2]] for line in lines[1 : 1 + count]])
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: not a .tem landmark file ({err})") from err
    if points.shape != (count, 2):
        raise ValueError(f"{path}: {len(points)} points, the header says {count}")
    return points


@dataclass(frozen=True)
class FaceFrame:
    """Origin between the pupils, x along the pupil line (image left to right), y perpendicular (downwards),
    unit the inter-pupillary distance ``ipd`` in pixels."""

    origin: np.ndarray
    x: np.ndarray
    y: np.ndarray
    ipd: float

    @classmethod
    def of(cls, named: Mapping[str, np.ndarray]) -> FaceFrame:
        axis = named["pupil_r"] - named["pupil_l"]
        ipd = float(np.linalg.norm(axis))
        x = axis / ipd
        return cls((named["pupil_l"] + named["pupil_r"]) / 2, x, np.array([-x[1], x[0]]), ipd)

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image pixels -> frame units."""
        centred = np.asarray(points, dtype=float) - self.origin
        return np.stack([centred @ self.x, centred @ self.y], axis=-1) / self.ipd

    def to_image(self, vectors: np.ndarray) -> np.ndarray:
        """(N, 2) displacement vectors in frame units -> image pixels."""
        vectors = np.asarray(vectors, dtype=float)
        return (vectors[..., :1] * self.x + vectors[..., 1:] * self.y) * self.ipd


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two points."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def mean_named(points: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The named points of the mean shape of several landmark arrays of one scheme."""
    return named_points(np.mean(np.stack(points), axis=0))
