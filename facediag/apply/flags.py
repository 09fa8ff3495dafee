"""The flags of a scored photo: short codes for tables, words for people. One vocabulary for predict's CSV,
explain.csv and the app.

Flag codes (``FLAGS``):

- ``center_crop``: no face was found; the central square was scored instead (``preprocess.no_face=center_crop``)
- ``upsampled``: the face was found only on the upsampled retry (small, blurred or not a face at all)
- ``low_detector_confidence``: the detector's score is below the 1st percentile of the training photos'
- ``several_faces``: the detector found more than one face; the largest confident one was scored
- ``out_of_distribution``: the photo's features are farther from the training photos than 99 % of held-out training
  people's (:mod:`facediag.apply.distribution`)
- ``overlaps_training_person``: the photo is (a copy of) a training/validation photo or shows one of their people
  (byte-identical file, or dlib identity descriptor within ``OVERLAP_DISTANCE``)
- ``saliency_fallback`` (explain only): the chosen saliency method's map was blank; occlusion's is shown instead

A photo with any flag has status ``flagged`` (:mod:`facediag.core.status`; ``center_crop`` keeps its own status) and
a ``reason`` listing the flags in words; its probabilities are still given (a research table loses nothing), and the
one-photo console, the app and the CSV say why they must not be read as a plain result. A photo without a face
(``no_face``) or unreadable (``error``) has no probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

from facediag.core.status import CENTER_CROP, FLAGGED, OK

CENTER_CROP_FLAG = "center_crop"
UPSAMPLED = "upsampled"
LOW_DETECTOR_CONFIDENCE = "low_detector_confidence"
SEVERAL_FACES = "several_faces"
OUT_OF_DISTRIBUTION = "out_of_distribution"
OVERLAPS_TRAINING_PERSON = "overlaps_training_person"
SALIENCY_FALLBACK = "saliency_fallback"

FLAGS: dict[str, str] = {
    CENTER_CROP_FLAG: "no face found: the central square was scored instead",
    UPSAMPLED: "the face was found only after upsampling the photo (small or unclear, perhaps not a face)",
    LOW_DETECTOR_CONFIDENCE: "the face detector was less sure than for nearly every training photo",
    SEVERAL_FACES: "several faces in the photo: only the largest was scored",
    OUT_OF_DISTRIBUTION: "outside what the model saw: the photo is unlike the training photos",
    OVERLAPS_TRAINING_PERSON: "the photo or its person was in the model's training data: the result is not independent",
    SALIENCY_FALLBACK: "the saliency method's map was blank: occlusion sensitivity is shown instead",
}
SEPARATOR = ";"  # between codes in a CSV cell
# dlib identity descriptor distance at or below which a photo shows a training person. London (204 photos):
# the cross-set identity rule of facediag.data.identity (photos of people absent from the reference set are
# never that close on London, Yale or JAFFE; 99 % of London's same-person pairs are); restated here so predict
# does not import facediag.data (scikit-learn) for a constant; tests/test_flags.py checks the two agree
OVERLAP_DISTANCE = 0.40


def flag_words(flags: Sequence[str], details: dict[str, str] | None = None) -> list[str]:
    """The words of each flag code (with ``details[code]`` appended where given)."""
    details = details or {}
    return [FLAGS[code] + (f" ({details[code]})" if details.get(code) else "") for code in flags]


def status_and_reason(status: str, reason: str, flags: Sequence[str],
                      details: dict[str, str] | None = None) -> tuple[str, str]:
    """The row's status and reason: a scored ``ok`` photo with flags becomes ``flagged`` with the flags in words;
    other statuses keep theirs (their reason first)."""
    words = "; ".join(flag_words([f for f in flags if f != CENTER_CROP_FLAG or status != CENTER_CROP], details))
    if status == OK and flags:
        return FLAGGED, words
    return status, "; ".join(part for part in (reason, words) if part)


def join(flags: Sequence[str]) -> str:
    """Codes as one CSV cell (``upsampled;several_faces``; empty when none)."""
    return SEPARATOR.join(flags)
