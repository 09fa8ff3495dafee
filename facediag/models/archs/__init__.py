"""The package's backbones, one module each: the network with its ``@register_backbone`` and
``@register_architecture`` (:mod:`facediag.models.registry`). Importing this package imports every module in it,
so a new backbone is a new module here and its spec in ``facediag/models/specs/``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
