"""Face preprocessing: detect → 68 landmarks → similarity alignment → crop, cached (Hydra group ``preprocess``).

``Preprocessor`` is the entry point; ``conf/preprocess/{dlib,fan,none}.yaml`` compose it.
"""

from facediag.preprocess.aligners import ResizeAligner, SimilarityAligner
from facediag.preprocess.detectors import DlibHogDetector, FanDetector
from facediag.preprocess.landmarks import DlibLandmarker, FanLandmarker
from facediag.preprocess.pipeline import Preprocessor
from facediag.preprocess.results import FaceResult, results_frame, summarise
from facediag.preprocess.weights import ModelUnavailableError

__all__ = [
    "DlibHogDetector",
    "DlibLandmarker",
    "FaceResult",
    "FanDetector",
    "FanLandmarker",
    "ModelUnavailableError",
    "Preprocessor",
    "ResizeAligner",
    "SimilarityAligner",
    "results_frame",
    "summarise",
]
