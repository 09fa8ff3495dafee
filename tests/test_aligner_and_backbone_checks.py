"""Where a crop comes from and what a backbone is built from: the aligners' matrices for results without
landmarks (facediag.preprocess.aligners), the preprocessing's argument checks (facediag.preprocess.pipeline) and
the backbone registry's refusals of specs that do not fit (facediag.models.registry); no image is detected."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facediag.core.crop import CropSpec
from facediag.models.registry import Backbone, architecture, create, load_network, load_spec, register_backbone
from facediag.preprocess.aligners import ResizeAligner, SimilarityAligner
from facediag.preprocess.face_results import FaceResult
from facediag.preprocess.pipeline import Preprocessor

CROP = CropSpec(size=100)


def test_a_center_crop_result_maps_the_image_s_central_square_onto_the_crop():
    result = FaceResult("wide.jpg", "center_crop", image_size=(400, 200))
    for aligner in (SimilarityAligner(), ResizeAligner()):
        matrix = aligner.crop_matrix(result, CROP)
        corners = np.array([[100, 0, 1], [300, 200, 1]], dtype=float) @ matrix.T  # the central 200 px square
        assert np.allclose(corners, [[0, 0], [100, 100]], atol=0.5)
    crop = SimilarityAligner().crop(np.zeros((200, 400, 3), np.uint8), result, CROP)
    assert crop.shape == (100, 100, 3)


def test_an_aligner_names_the_photo_it_cannot_align():
    no_face = FaceResult("nobody.jpg", "no_face")
    with pytest.raises(ValueError, match="nobody.jpg: no landmarks to align .status no_face."):
        SimilarityAligner().crop_matrix(no_face, CROP)
    with pytest.raises(ValueError, match="nobody.jpg: no landmarks to align .status no_face."):
        SimilarityAligner().crop(np.zeros((10, 10, 3), np.uint8), no_face, CROP)
    with pytest.raises(ValueError, match="nobody.jpg: image size unknown .status no_face."):
        ResizeAligner().crop_matrix(no_face, CROP)
    with pytest.raises(ValueError, match="points must be 68 or 5, got 12"):
        SimilarityAligner(points=12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"detector": object()}, "give both a detector and a landmarker, or neither"),
    ({"no_face": "guess"}, "no_face must be one of"),
    ({"n_workers": 0}, "n_workers must be >= 1 or None, got 0"),
])  # fmt: skip
def test_preprocessing_refuses_settings_that_cannot_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Preprocessor(**kwargs)


def test_a_crop_spec_that_cannot_be_made_is_refused_before_any_image_is_read(tmp_path):
    pre = Preprocessor(cache_dir=None, progress=False, n_workers=1)
    with pytest.raises(ValueError, match="unknown template 'round'"):
        pre.faces([str(tmp_path / "a.jpg")], CropSpec(template="round"))
    with pytest.raises(ValueError, match="need size > 0 and padding >= 0, got size=0, padding=0.25"):
        pre.faces([str(tmp_path / "a.jpg")], CropSpec(size=0))


def test_a_backbone_spec_must_name_itself_and_a_registered_feature_layer(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: other\nfeature_layer: pooled\n")
    with pytest.raises(ValueError, match=f"{spec}: expected a mapping with name: tiny"):
        Backbone("tiny", {"pooled": "penultimate"}, spec).definition()
    spec.write_text("name: tiny\nfeature_layer: conv3\n")
    with pytest.raises(ValueError, match=r"feature_layer 'conv3' is not one of the registered feature layers"):
        Backbone("tiny", {"pooled": "penultimate"}, spec).definition()
    with pytest.raises(FileNotFoundError, match=f"backbone 'tiny': no spec file {tmp_path / 'absent.yaml'}"):
        register_backbone("tiny", feature_layers={"pooled": "penultimate"}, spec=tmp_path / "absent.yaml")


def test_weights_that_do_not_fit_the_backbone_or_its_architecture_are_refused(tmp_path):
    spec = load_spec("dlib_resnet", "dlib_faces")
    with pytest.raises(ValueError, match=r"unknown arch 'tinynet'; known: \[.*'dlib_resnet'"):
        architecture(dataclasses.replace(spec, arch="tinynet"))
    with pytest.raises(ValueError, match="architecture resnet50 cannot read weight format 'dlib'"):
        load_network(dataclasses.replace(spec, arch="resnet50", format="dlib"), tmp_path / "x.dat")
    with pytest.raises(ValueError, match=f"weights spec {spec.source} is for backbone 'dlib_resnet', not 'resnet50'"):
        create("resnet50", spec)
