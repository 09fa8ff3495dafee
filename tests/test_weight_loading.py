"""Loading a weight file builds the network without random init (meta device) and falls back to a real build
when the network has a tensor no file holds."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from facediag.models import registry
from facediag.models.face_backbone import Architecture
from facediag.models.flops import count_macs, random_weights_spec, unweighted_model
from facediag.models.registry import create, load_network, load_spec


class WithConstant(nn.Module):
    """A layer and a non-persistent buffer (in no state dict): only a real build fills it."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)
        self.register_buffer("scale", torch.full((3,), 2.0), persistent=False)


def test_a_loaded_network_holds_the_files_tensors_as_trainable_cpu_parameters(tmp_path):
    spec = load_spec("dlib_resnet", "none")
    saved = create("dlib_resnet", spec).net
    torch.save(saved.state_dict(), tmp_path / "w.pth")
    net = load_network(dataclasses.replace(spec, format="torch", file="w.pth"), tmp_path / "w.pth")
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), net.state_dict().values(), strict=True))
    assert all(p.requires_grad and p.device.type == "cpu" for p in net.parameters())


def test_a_network_with_a_tensor_no_file_holds_is_built_for_real(tmp_path, monkeypatch):
    toy = Architecture("toy_constant", WithConstant, lambda net, x: x, "fc", lambda net: [[net.fc]])
    monkeypatch.setitem(registry.ARCHITECTURES, "toy_constant", toy)
    spec = dataclasses.replace(load_spec("dlib_resnet", "none"), arch="toy_constant", format="torch", file="w.pth",
                               num_classes=2)
    torch.save(WithConstant(2).state_dict(), tmp_path / "w.pth")
    net = load_network(spec, tmp_path / "w.pth")
    assert torch.equal(net.scale, torch.full((3,), 2.0)) and not net.fc.weight.is_meta


def test_an_unweighted_model_counts_the_macs_of_a_randomly_initialised_one():
    spec = load_spec("dlib_resnet", "dlib_faces")
    random = create("dlib_resnet", random_weights_spec(spec))
    unweighted = unweighted_model("dlib_resnet", spec)
    assert all(not t.is_meta and not t.any() for t in unweighted.state_dict().values())
    assert count_macs(unweighted, num_classes=3) == count_macs(random, num_classes=3)
