"""The simulated conditions: each a clinical descriptor, the measure it changes and how.

A geometric condition moves the landmarks near its named points with a smooth Gaussian displacement (in units of
the inter-pupillary distance, mirrored on the two sides of the face); :func:`offset` scales that displacement, per
face, so that the condition's measure changes by exactly the asked amount. An appearance condition changes colour
inside a soft face region instead (:mod:`facediag.simulate.appearance`). Effect sizes are in SD units of the
measure over the source faces (:func:`facediag.simulate.source.measure_table`), so "1 SD" means the same for every
condition and every source set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from facediag.simulate.anatomy import FaceFrame, distance, named_points

Named = Mapping[str, np.ndarray]


def _eye_line(named: Named) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre between the inner eye corners, x axis, y axis) of the face frame."""
    frame = FaceFrame.of(named)
    return (named["en_l"] + named["en_r"]) / 2, frame.x, frame.y


def interpupillary_index(named: Named) -> float:
    """Inter-pupillary distance over the eyes-to-mouth height (mid-pupils to stomion, along the face's vertical)."""
    frame = FaceFrame.of(named)
    return frame.ipd / float((named["st"] - frame.origin) @ frame.y)


def palpebral_slant(named: Named) -> float:
    """Mean angle (degrees) of the inner-to-outer eye corner line above the pupil line; up-slanting > 0."""
    _, x, y = _eye_line(named)
    angles = []
    for side, sign in (("l", -1.0), ("r", 1.0)):
        v = named[f"ex_{side}"] - named[f"en_{side}"]
        angles.append(np.degrees(np.arctan2(-(v @ y), sign * (v @ x))))
    return float(np.mean(angles))


def nasal_height(named: Named) -> float:
    """Height of the nose as a share of eyes-to-mouth: (subnasale - mid inner canthi) / (stomion - mid inner
    canthi), along the face's vertical; a short nose over a long philtrum lowers it."""
    centre, _, y = _eye_line(named)
    return float(((named["sn"] - centre) @ y) / ((named["st"] - centre) @ y))


def chin_height(named: Named) -> float:
    """Lower-face height over mid-face height: (menton - stomion) / (stomion - mid inner canthi), vertical."""
    centre, _, y = _eye_line(named)
    return float(((named["me"] - named["st"]) @ y) / ((named["st"] - centre) @ y))


def eye_opening(named: Named) -> float:
    """Palpebral aperture: mean over the eyes of the eyelid gap (lower minus upper eyelid margin, along the face's
    vertical) over the eye's width (inner to outer corner)."""
    _, _, y = _eye_line(named)
    return float(np.mean([((named[f"ll_{s}"] - named[f"ul_{s}"]) @ y) / distance(named[f"en_{s}"], named[f"ex_{s}"])
                          for s in ("l", "r")]))


def mouth_width(named: Named) -> float:
    """Mouth width over outer canthal distance (ch-ch / ex-ex)."""
    return distance(named["ch_l"], named["ch_r"]) / distance(named["ex_l"], named["ex_r"])


@dataclass(frozen=True)
class Bump:
    """A Gaussian-weighted displacement around a named point (a name without ``_l`` / ``_r``: both sides, the
    image-left one mirrored): weight exp(-d^2/2), d the distance in ``sigma`` (x, y) IPD units, times ``direction``
    (face-frame units, image-right side) for a shift, or times a rotation about the point (``rotate``: an up-slant
    of the image-right side for a positive amount)."""

    centre: str
    sigma: tuple[float, float]
    direction: tuple[float, float] = (0.0, 0.0)
    rotate: bool = False

    def field(self, frame_points: np.ndarray, named_frame: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N, 2) displacement (frame units) of points given in frame units."""
        sides = [("", 1.0)] if self.centre in named_frame else [("_l", -1.0), ("_r", 1.0)]
        total = np.zeros_like(frame_points)
        for suffix, mirror in sides:
            centre = named_frame[self.centre + suffix]
            relative = frame_points - centre
            weight = np.exp(-((relative / np.asarray(self.sigma)) ** 2).sum(axis=1) / 2)[:, None]
            if self.rotate:  # (dx, dy) -> (dy, -dx) on the right; mirrored on the left: outer ends go up
                move = np.stack([mirror * relative[:, 1], -mirror * relative[:, 0]], axis=1)
            else:
                move = np.array([self.direction[0] * mirror, self.direction[1]])
            total += weight * move
        return total


@dataclass(frozen=True)
class Condition:
    """One simulated condition: its class folder name, clinical descriptor, measure and change."""

    name: str
    descriptor: str
    measure_name: str
    measure: Callable[[Named], float] | None
    sign: float  # +1: the condition raises the measure, -1: lowers it
    kind: str = "geometric"  # or "appearance", or "syndrome" (``parts``: the single descriptors it combines)
    bumps: tuple[Bump, ...] = field(default_factory=tuple)
    parts: tuple[str, ...] = ()

    @property
    def descriptors(self) -> tuple[Condition, ...]:
        """The single-descriptor conditions whose measures it moves: its ``parts``, or itself."""
        return tuple(CONDITIONS[p] for p in self.parts) if self.parts else (self,)

    @property
    def measure_doc(self) -> str:
        """The measure's one-line definition (its docstring)."""
        from facediag.simulate.appearance import skin_yellowness

        if self.parts:
            return "; ".join(f"{d.name}: {d.measure_name}" for d in self.descriptors)
        doc = (self.measure or skin_yellowness).__doc__ or ""
        return " ".join(doc.split())

    def unit_field(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image-pixel displacement of every landmark for one IPD of the condition's change."""
        named = named_points(points)
        frame = FaceFrame.of(named)
        named_frame = {k: frame.to_frame(v[None])[0] for k, v in named.items()}
        local = frame.to_frame(points)
        return frame.to_image(sum(b.field(local, named_frame) for b in self.bumps))


def offset(condition: Condition, points: np.ndarray, change: float, iterations: int = 4) -> np.ndarray:
    """(N, 2) landmark displacement that changes ``condition``'s measure by ``change`` (Newton on the scale of its
    unit field; exact to < 1e-6 of the change for the smooth measures here)."""
    if change == 0 or condition.kind != "geometric":
        return np.zeros_like(points, dtype=float)
    unit = condition.unit_field(points)
    base = condition.measure(named_points(points))

    def gap(scale: float) -> float:
        return condition.measure(named_points(points + scale * unit)) - base - change

    scale, step = 0.0, 1e-4
    for _ in range(iterations):
        slope = (gap(scale + step) - gap(scale - step)) / (2 * step)
        scale -= gap(scale) / slope
    return scale * unit


def joint_offset(
    descriptors: Sequence[Condition], points: np.ndarray, changes: Sequence[float], iterations: int = 4
) -> np.ndarray:
    """(N, 2) landmark displacement that changes every geometric descriptor's measure by its ``changes`` entry at
    once: Newton on the scales of their unit fields with a finite-difference Jacobian, so fields that overlap
    (a nose-base bump also moves the stomion) are accounted for. Appearance descriptors are skipped."""
    chosen = [(d, float(c)) for d, c in zip(descriptors, changes, strict=True) if d.kind == "geometric"]
    if not chosen or not any(c for _, c in chosen):
        return np.zeros_like(points, dtype=float)
    units = np.stack([d.unit_field(points) for d, _ in chosen])
    base = np.array([d.measure(named_points(points)) for d, _ in chosen])
    target = np.array([c for _, c in chosen])

    def gap(scales: np.ndarray) -> np.ndarray:
        named = named_points(points + np.tensordot(scales, units, axes=1))
        return np.array([d.measure(named) for d, _ in chosen]) - base - target

    scales, step = np.zeros(len(chosen)), 1e-4
    for _ in range(iterations):
        jacobian = np.stack([(gap(scales + step * e) - gap(scales - step * e)) / (2 * step)
                             for e in np.eye(len(chosen))], axis=1)  # fmt: skip
        scales = scales - np.linalg.solve(jacobian, gap(scales))
    return np.tensordot(scales, units, axes=1)


def descriptors_of(conditions: Sequence[Condition]) -> list[Condition]:
    """The single descriptors a tree's conditions move, each once, in order (a tree of single descriptors: its
    conditions themselves)."""
    return list({d.name: d for c in conditions for d in c.descriptors}.values())


#: every condition a tree can hold; ``conditions=[...]`` picks (DEFAULT: four, one of them appearance)
CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("hypertelorism", "hypertelorism: widely spaced eyes (Down syndrome, craniofrontonasal "
                  "dysplasia, Noonan)", "inter-pupillary index", interpupillary_index, +1.0,
                  bumps=(Bump("pupil", (0.35, 0.3), (1.0, 0.0)),)),
        Condition("upslant", "up-slanting palpebral fissures: outer eye corners higher than inner (Down syndrome)",
                  "palpebral slant (degrees)", palpebral_slant, +1.0,
                  bumps=(Bump("ex", (0.25, 0.2), (0.0, -1.0)),)),
        Condition("midface", "midface hypoplasia: short nose and long philtrum (Down syndrome, "
                  "fetal alcohol syndrome, achondroplasia)", "nasal height", nasal_height, -1.0,
                  bumps=(Bump("sn", (0.45, 0.28), (0.0, -1.0)),)),
        Condition("micrognathia", "micrognathia: small, short lower jaw (Pierre Robin, Treacher Collins)",
                  "chin height", chin_height, -1.0, bumps=(Bump("me", (0.5, 0.35), (0.0, -1.0)),)),
        Condition("wide_mouth", "macrostomia: wide mouth (Angelman, Williams)", "mouth width", mouth_width, +1.0,
                  bumps=(Bump("ch", (0.35, 0.25), (1.0, 0.0)),)),
        Condition("eye_opening", "wide palpebral aperture: upper-lid retraction and proptosis (exophthalmos, "
                  "Graves' hyperthyroidism), lagophthalmos (leprosy's facial-nerve palsy)", "eye opening",
                  eye_opening, +1.0, bumps=(Bump("ul", (0.16, 0.06), (0.0, -1.0)),
                                            Bump("ll", (0.16, 0.06), (0.0, 1.0)))),
        Condition("skin_tone", "skin-tone shift towards yellow (jaundice, the pallor-and-jaundice of "
                  "beta-thalassaemia)", "skin yellowness (CIELAB b*)", None, +1.0, kind="appearance"),
    )
}  # fmt: skip
#: syndrome-like conditions modelled on the DSF classes: three descriptors each, moved by ``strength`` SD each;
#: any two share at most one descriptor (docs/simulate.md, with the clinical signs each descriptor stands for)
SYNDROMES: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("down_like", "Down-syndrome-like: up-slanting palpebral fissures, flat midface with a short nose, "
                  "widely spaced eyes", "", None, +1.0, kind="syndrome",
                  parts=("upslant", "midface", "hypertelorism")),
        Condition("thalassaemia_like", "beta-thalassaemia-like: yellow-pale skin (haemolysis), maxillary "
                  "overgrowth lengthening the upper lip under a depressed nasal bridge, a retrusive lower jaw",
                  "", None, +1.0, kind="syndrome", parts=("skin_tone", "midface", "micrognathia")),
        Condition("hyperthyroid_like", "hyperthyroid-like (Graves'): lid retraction and exophthalmos widening the "
                  "eye opening, the proptotic eyes' look of wide spacing, a thin, short lower face",
                  "", None, +1.0, kind="syndrome", parts=("eye_opening", "hypertelorism", "micrognathia")),
        Condition("leprosy_like", "lepromatous-leprosy-like: lagophthalmos (facial-nerve palsy) widening the eye "
                  "opening, a collapsed (saddle, short) nose, thickened lips widening the mouth", "", None, +1.0,
                  kind="syndrome", parts=("eye_opening", "midface", "wide_mouth")),
    )
}  # fmt: skip
CONDITIONS.update(SYNDROMES)
DEFAULT = ("hypertelorism", "midface", "micrognathia", "skin_tone")
#: named sets for ``conditions=<name>``
SETS: dict[str, tuple[str, ...]] = {"default": DEFAULT, "syndromes": tuple(SYNDROMES)}


def condition_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """``conditions=`` as given (a list of names, a set's name, or a list holding a set's name) -> the names."""
    names = [value] if isinstance(value, str) else list(value)
    return tuple(n for name in names for n in SETS.get(str(name), (str(name),)))
