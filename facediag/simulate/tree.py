"""Build a simulated class-folder tree: one person, one class; every image through the same warp and encoding.

Per person (seeded): a natural-variation jitter of every condition of the tree (N(0, ``jitter``) SD each, no
direction), plus ``strength`` SD of the person's own condition (none for ``healthy``), plus a small pose jitter
(rotation, scale, shift of the whole photo); then the landmark-driven warp, the appearance change, and one JPEG
encoding. ``strength=0`` is a null tree: the classes differ in nothing but their people.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.errors import UserError
from facediag.simulate.anatomy import named_points
from facediag.simulate.appearance import shift_yellowness, skin_weight, skin_yellowness
from facediag.simulate.conditions import (
    CONDITIONS,
    DEFAULT,
    SETS,
    Condition,
    condition_names,
    descriptors_of,
    joint_offset,
    offset,
)
from facediag.simulate.source import Face
from facediag.simulate.standardised import standardised_measures
from facediag.simulate.warp import apply, changed_region, similarity, warp_image

HEALTHY = "healthy"
TRUTH_DIR = ".truth"  # hidden: a class-folder reader (facediag.data.folder) skips it


@dataclass(frozen=True)
class CaptureCue:
    """Re-save one class differently: JPEG ``quality`` and Gaussian pixel ``noise`` (SD, 0-255 scale)."""

    label: str
    quality: int
    noise: float

    @classmethod
    def parse(cls, text: str | None) -> CaptureCue | None:
        """``<class>:<jpeg quality>,<noise>`` (e.g. ``healthy:70,3``); None or empty: no cue."""
        if not text:
            return None
        try:
            label, rest = str(text).split(":")
            quality, noise = rest.split(",")
            cue = cls(label.strip(), int(quality), float(noise))
        except ValueError as err:
            raise UserError(f"capture_cue={text!r}: expected <class>:<jpeg quality>,<noise> (healthy:70,3)") from err
        if not 1 <= cue.quality <= 100 or cue.noise < 0:
            raise UserError(f"capture_cue={text!r}: JPEG quality must be 1-100 and noise >= 0")
        return cue


@dataclass(frozen=True)
class Settings:
    """What a tree is made with (written beside it as ``simulate.json``)."""

    strength: float = 1.0
    seed: int = 0
    conditions: tuple[str, ...] = DEFAULT
    jitter: float = 0.3  # SD units, every condition's measure, every image
    rotation: float = 0.5  # pose jitter: degrees (SD)
    scale: float = 0.005  # relative (SD)
    shift: float = 1.0  # px (SD, each axis)
    quality: int = 95
    people: int | None = None
    capture_cue: str | None = None

    def __post_init__(self) -> None:  # ``conditions=syndromes``: a named set's names (they name the tree)
        object.__setattr__(self, "conditions", condition_names(self.conditions))

    def chosen(self) -> list[Condition]:
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or not self.conditions:
            raise UserError(f"conditions={list(self.conditions)}: choose one or more of {sorted(CONDITIONS)}, or a "
                            f"named set: {sorted(SETS)}")  # fmt: skip
        if len(set(self.conditions)) != len(self.conditions):
            raise UserError(f"conditions={list(self.conditions)}: each condition once")
        return [CONDITIONS[c] for c in self.conditions]


def check_request(out: Path, settings: Settings) -> tuple[list[Condition], list[str], CaptureCue | None]:
    """The tree's conditions, classes and capture cue, or a :class:`UserError` before any work: an unknown
    condition, a cue naming no class, a negative strength, or an ``out`` folder that is not empty."""
    if settings.strength < 0 or settings.jitter < 0:
        raise UserError(f"strength={settings.strength}, jitter={settings.jitter}: SD units, 0 or more")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"out={out} exists and is not an empty folder: choose a new one (nothing was written)")
    conditions = settings.chosen()
    classes = [HEALTHY, *[c.name for c in conditions]]
    cue = CaptureCue.parse(settings.capture_cue)
    if cue is not None and cue.label not in classes:
        raise UserError(f"capture_cue={settings.capture_cue!r}: class {cue.label!r} is not one of {classes}")
    return conditions, classes, cue


def assign_classes(faces: Sequence[Face], classes: Sequence[str], rng: np.random.Generator) -> list[str]:
    """One class per person, balanced: people are shuffled within each sex (unknown counts as one) and dealt
    round-robin, so every class gets the same number of people (+-1) and a similar sex mix."""
    order = rng.permutation(len(faces))
    by_sex = sorted(order, key=lambda i: str(faces[i].meta.get("sex") or ""))
    start = int(rng.integers(len(classes)))
    labels = [""] * len(faces)
    for position, index in enumerate(by_sex):
        labels[index] = classes[(start + position) % len(classes)]
    return labels


def cast(
    faces: Sequence[Face], classes: Sequence[str], settings: Settings
) -> tuple[list[int], list[str], list[np.random.SeedSequence]]:
    """Who is in the tree (indices into ``faces``), each one's class, and every face's own seed (indexed like
    ``faces``): all drawn from ``settings.seed``."""
    root = np.random.SeedSequence(int(settings.seed))
    assign_seed, *person_seeds = root.spawn(1 + len(faces))
    rng = np.random.default_rng(assign_seed)
    chosen = list(range(len(faces)))
    if settings.people is not None:
        if not 2 <= int(settings.people) <= len(faces):
            raise UserError(f"people={settings.people}: choose 2 to {len(faces)} (the source's faces)")
        chosen = sorted(rng.choice(len(faces), int(settings.people), replace=False).tolist())
    if len(chosen) < 2 * len(classes):
        raise UserError(f"{len(chosen)} people for {len(classes)} classes: at least two people per class are needed "
                        "(more people, or fewer conditions=[...])")  # fmt: skip
    return chosen, assign_classes([faces[i] for i in chosen], classes, rng), person_seeds


@dataclass
class Plan:
    """The draws for one photo: each condition's amount (SD units: jitter, plus ``strength`` for the person's own
    condition), the pose similarity (2, 3), and where the landmarks go."""

    amounts: dict[str, float]
    pose: np.ndarray
    target: np.ndarray


def plan(
    face: Face, label: str, conditions: Sequence[Condition], sd: pd.Series, settings: Settings,
    rng: np.random.Generator, size: tuple[int, int],
) -> Plan:  # fmt: skip
    """Draw the jitter and pose of one photo (``size``: width, height) and move its landmarks accordingly: every
    descriptor of the tree jittered, the person's own condition's descriptors ``strength`` SD further."""
    descriptors = descriptors_of(conditions)
    amounts = {d.name: float(rng.normal(0.0, settings.jitter)) for d in descriptors}
    if label != HEALTHY:
        for descriptor in CONDITIONS[label].descriptors:
            amounts[descriptor.name] += settings.strength
    width, height = size
    pose = similarity(rng.normal(0.0, settings.rotation), 1.0 + rng.normal(0.0, settings.scale),
                      tuple(rng.normal(0.0, settings.shift, 2)), ((width - 1) / 2, (height - 1) / 2))  # fmt: skip
    changes = [d.sign * amounts[d.name] * sd[d.name] for d in descriptors]
    if any(c.parts for c in conditions):  # syndrome-like: every measure moved by its amount, jointly solved
        move = joint_offset(descriptors, face.points, changes)
    else:  # single descriptors: each offset on its own (how the first trees were made; kept reproducible)
        move = sum(offset(d, face.points, change) for d, change in zip(descriptors, changes, strict=True))
    return Plan(amounts, pose, apply(pose, face.points + move))


def descriptor_regions(
    points: np.ndarray, drawn: Plan, condition: Condition, sd: pd.Series, shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Each of ``condition``'s descriptors' (H, W) bool region, by name, in the photo ``drawn`` makes of a face with
    source landmarks ``points``: the skin ellipse for an appearance descriptor, where a 1 SD change of the measure
    moves pixels for a geometric one. A condition's truth mask is their union."""
    regions = {}
    for descriptor in condition.descriptors:
        if descriptor.kind == "appearance":
            regions[descriptor.name] = skin_weight(shape, drawn.target) > 0.5
        else:
            unit = offset(descriptor, points, descriptor.sign * sd[descriptor.name])
            regions[descriptor.name] = changed_region(drawn.target, unit @ drawn.pose[:, :2].T, shape)
    return regions


@dataclass
class Rendered:
    """One simulated photo, the landmarks where they now are, its truth mask and the draws that made it."""

    image: np.ndarray
    points: np.ndarray
    mask: np.ndarray
    row: dict[str, Any]


def render(
    face: Face,
    label: str,
    conditions: Sequence[Condition],
    table: pd.DataFrame,
    settings: Settings,
    rng: np.random.Generator,
) -> Rendered:
    """Warp and recolour one source photo as :func:`plan` draws; the truth mask and measures of its condition."""
    from facediag.core.imageio import read_rgb

    sd = table.set_index("condition")["sd"]
    original = read_rgb(face.path)
    height, width = original.shape[:2]
    drawn = plan(face, label, conditions, sd, settings, rng, (width, height))
    target, pose = drawn.target, drawn.pose
    image = warp_image(original, face.points, target, pose)
    descriptors = descriptors_of(conditions)
    for descriptor in descriptors:
        if descriptor.kind == "appearance":
            delta = descriptor.sign * drawn.amounts[descriptor.name] * sd[descriptor.name]
            image = shift_yellowness(image, skin_weight(image.shape, target), delta)
    mask = np.zeros((height, width), dtype=bool)
    own = [d.name for d in CONDITIONS[label].descriptors] if label != HEALTHY else []
    row: dict[str, Any] = {f"jitter_{d.name}": round(drawn.amounts[d.name] - (settings.strength if d.name in own
                                                                              else 0.0), 4)
                           for d in descriptors}  # fmt: skip
    if label != HEALTHY:
        condition, changes = CONDITIONS[label], {}
        regions = descriptor_regions(face.points, drawn, condition, sd, image.shape)
        for descriptor in condition.descriptors:
            mask |= regions[descriptor.name]  # the truth mask: the union of the descriptors' regions
            if descriptor.kind == "appearance":
                before, after = skin_yellowness(original, face.points), skin_yellowness(image, target)
            else:
                before, after = descriptor.measure(named_points(face.points)), descriptor.measure(
                    named_points(target))  # fmt: skip
            changes[descriptor.name] = (before, after, (after - before) / sd[descriptor.name] * descriptor.sign)
        if condition.parts:
            row.update({f"change_sd_{name}": change for name, (_, _, change) in changes.items()},
                       change_sd=float(np.mean([change for _, _, change in changes.values()])))  # fmt: skip
        else:
            before, after, change = changes[label]
            row.update(measure_before=before, measure_after=after, change_sd=change)
    return Rendered(image, target, mask, row)


def _encode(image: np.ndarray, path: Path, quality: int, noise: float, rng: np.random.Generator) -> None:
    from PIL import Image

    if noise > 0:
        image = np.clip(image + rng.normal(0.0, noise, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path, format="JPEG", quality=quality)


def build_tree(
    out: str | os.PathLike, faces: Sequence[Face], table: pd.DataFrame, settings: Settings, source: str
) -> pd.DataFrame:
    """Write the tree into ``out`` (made in ``<out>.partial`` and renamed when complete); return truth.csv."""
    from PIL import Image
    from tqdm.auto import tqdm

    out = Path(out).expanduser()
    conditions, classes, cue = check_request(out, settings)
    chosen, labels, person_seeds = cast(faces, classes, settings)

    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    for folder in [*classes, TRUTH_DIR]:
        (partial / folder).mkdir(parents=True)
    subjects, truth = [], []
    for index, label in tqdm(list(zip(chosen, labels, strict=True)), desc="simulate", unit="face"):
        face = faces[index]
        person_rng = np.random.default_rng(person_seeds[index])
        done = render(face, label, conditions, table, settings, person_rng)
        relative = f"{label}/{face.subject}.jpg"
        quality, noise = (cue.quality, cue.noise) if cue is not None and cue.label == label else (settings.quality, 0.0)
        _encode(done.image, partial / relative, quality, noise, person_rng)
        measures = standardised_measures(conditions, table, done.points, partial / relative)
        mask_path = f"{TRUTH_DIR}/{face.subject}_truth.png"
        Image.fromarray(done.mask.astype(np.uint8) * 255).save(partial / mask_path)
        subjects.append({"path": relative, "subject": face.subject, **face.meta, "source_file": face.path.name})
        truth.append({"path": relative, "subject": face.subject, "class": label,
                      "condition": "" if label == HEALTHY else label,
                      "strength": 0.0 if label == HEALTHY else float(settings.strength), "mask": mask_path,
                      "mask_share": round(float(done.mask.mean()), 5), "jpeg_quality": quality, "noise": noise,
                      **done.row, **measures})  # fmt: skip
    truth_table = pd.DataFrame(truth)
    pd.DataFrame(subjects).to_csv(partial / "subjects.csv", index=False)
    truth_table.to_csv(partial / "truth.csv", index=False)
    table.to_csv(partial / "conditions.csv", index=False)
    made = {"source": source, **asdict(settings), "conditions": list(settings.conditions), "classes": classes}
    (partial / "simulate.json").write_text(json.dumps(made, indent=2, default=str) + "\n")
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return truth_table
