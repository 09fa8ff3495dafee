"""Face preprocessing: detect → 68 landmarks → similarity alignment → crop, cached (Hydra group ``preprocess``).

``Preprocessor`` is the entry point; ``conf/preprocess/{dlib,fan,none}.yaml`` compose it. ``Preprocessor.faces``
returns a ``Faces`` value, the record the later stages (features, classifiers) take.
"""

from facediag.preprocess.aligners import ResizeAligner, SimilarityAligner
from facediag.preprocess.detectors import DlibHogDetector, FanDetector
from facediag.preprocess.face_results import FaceResult, results_frame, summarise
from facediag.preprocess.faces import Faces
from facediag.preprocess.landmark_weights import ModelUnavailableError
from facediag.preprocess.landmarks import DlibLandmarker, FanLandmarker
from facediag.preprocess.pipeline import Preprocessor

__all__ = [
    "DlibHogDetector",
    "DlibLandmarker",
    "FaceResult",
    "Faces",
    "FanDetector",
    "FanLandmarker",
    "ModelUnavailableError",
    "Preprocessor",
    "ResizeAligner",
    "SimilarityAligner",
    "results_frame",
    "summarise",
]
