"""The package's backbones, one module each: the network, its ``@register_architecture`` and
``@register_backbone`` (:mod:`facediag.models.registry`); importing this package registers them all."""

from facediag.models.archs import caffe_resnet, dlib_resnet, efficientnet_lite, torchvision_nets

__all__ = ["caffe_resnet", "dlib_resnet", "efficientnet_lite", "torchvision_nets"]
