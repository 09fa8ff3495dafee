"""What preprocessing found in each image (``FaceResult``) and the report made of those results."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.status import CENTER_CROP, ERROR, EXCLUDED, NO_FACE, NOT_IMAGE, OK

STATUSES = (OK, NO_FACE, ERROR, CENTER_CROP, NOT_IMAGE, EXCLUDED)  # facediag.core.status, in the summary's order
REPORT_COLUMNS = [
    "path", "status", "n_faces", "det_score", "fallback", "reason",
    "width", "height", "box_x0", "box_y0", "box_x1", "box_y1", "sha256",
]  # fmt: skip


@dataclass
class FaceResult:
    """What preprocessing found in one image.

    ``status``: "ok" (face + landmarks), "no_face" (skipped), "center_crop" (no face; the central
    square stands in, flagged), "error" (unreadable file; ``reason`` says why), "not_image" / "excluded"
    (another extension / a hidden file, never opened): the words of :mod:`facediag.core.status`. ``fallback`` is
    "upsampled" when the face was only found on the upsampled retry, "center_crop" for that policy.
    ``box`` is (x0, y0, x1, y1) and ``landmarks`` (68, 2) float32, both in pixels of the upright
    full-resolution image; ``image_size`` is (width, height).
    """

    path: str
    status: str
    reason: str = ""
    n_faces: int | None = None
    det_score: float = math.nan
    fallback: str = ""
    landmarks: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    image_size: tuple[int, int] | None = None
    sha256: str = ""
    cacheable: bool = field(default=True, repr=False, compare=False)

    @property
    def has_crop(self) -> bool:
        """Whether a crop is made for this image (status "ok" or "center_crop")."""
        return self.status in ("ok", "center_crop")

    def to_record(self) -> dict[str, Any]:
        """JSON-safe dict (the cache entry)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "n_faces": self.n_faces,
            "det_score": None if math.isnan(self.det_score) else self.det_score,
            "fallback": self.fallback,
            "landmarks": None if self.landmarks is None else self.landmarks.tolist(),
            "box": None if self.box is None else list(self.box),
            "image_size": None if self.image_size is None else list(self.image_size),
            "sha256": self.sha256,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], path: str) -> FaceResult:
        landmarks = record.get("landmarks")
        return cls(
            path=path,
            status=record["status"],
            reason=record.get("reason", ""),
            n_faces=record.get("n_faces"),
            det_score=math.nan if record.get("det_score") is None else float(record["det_score"]),
            fallback=record.get("fallback", ""),
            landmarks=None if landmarks is None else np.asarray(landmarks, dtype=np.float32),
            box=None if record.get("box") is None else tuple(record["box"]),
            image_size=None if record.get("image_size") is None else tuple(record["image_size"]),
            sha256=record.get("sha256", ""),
        )


def results_frame(results: Sequence[FaceResult]) -> pd.DataFrame:
    """The preprocessing report as a DataFrame (columns ``REPORT_COLUMNS``)."""
    rows = []
    for r in results:
        box = r.box if r.box is not None else (math.nan,) * 4
        width, height = r.image_size if r.image_size is not None else (None, None)
        rows.append(
            {
                "path": r.path, "status": r.status, "n_faces": r.n_faces, "det_score": r.det_score,
                "fallback": r.fallback, "reason": r.reason, "width": width, "height": height,
                "box_x0": box[0], "box_y0": box[1], "box_x1": box[2], "box_y1": box[3], "sha256": r.sha256,
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    for column in ("n_faces", "width", "height"):
        frame[column] = frame[column].astype("Int64")
    return frame


def summarise(results: Sequence[FaceResult], max_listed: int = 20) -> str:
    """Human summary: counts per status and the files that were not "ok", with their reasons."""
    counts = Counter(r.status for r in results)
    upsampled = sum(r.fallback == "upsampled" for r in results)
    several = sum((r.n_faces or 0) > 1 for r in results)
    lines = [
        f"{len(results)} images: " + ", ".join(f"{status} {counts.get(status, 0)}" for status in STATUSES),
        f"  faces found only when upsampled: {upsampled}; images with several faces (largest kept): {several}",
    ]
    problems = [r for r in results if r.status != "ok"]
    for r in problems[:max_listed]:
        lines.append(f"  {r.status:11s} {r.path}: {r.reason}")
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more (see the report)")
    return "\n".join(lines)
