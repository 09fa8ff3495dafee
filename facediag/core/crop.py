"""The aligned face crop a model sees: side, landmark template and padding, one value (``CropSpec``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CropSpec:
    """An aligned square face crop: ``size`` px, the landmark ``template`` it is aligned to, ``padding`` around it.

    The defaults are dlib's face chip (150 px, dlib template, padding 0.25; :data:`DEFAULT_CROP`), stated here
    only. Every stage takes the crop as this one value (``Preprocessor.faces(paths, crop)``, an aligner's
    ``crop(image, result, crop)``). Iterating gives ``(size, template, padding)`` (and ``spec[0]`` is the size),
    so the recorded ``[size, template, padding]`` lists of metrics.json keep working.
    """

    size: int = 150
    template: str = "dlib"
    padding: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "template", str(self.template))
        object.__setattr__(self, "padding", float(self.padding))

    def __iter__(self) -> Iterator[Any]:
        return iter((self.size, self.template, self.padding))

    def __getitem__(self, index: int) -> Any:  # code written for the (size, template, padding) tuple
        return tuple(self)[index]

    @classmethod
    def of(cls, value: Any) -> CropSpec:
        """A CropSpec from a config node / mapping with ``size``, ``template``, ``padding`` (missing keys take the
        defaults), a recorded ``[size, template, padding]`` sequence, or a CropSpec."""
        if isinstance(value, CropSpec):
            return value
        if isinstance(value, Mapping) or hasattr(value, "keys"):
            given = {k: value[k] for k in ("size", "template", "padding") if k in value and value[k] is not None}
            return cls(**given)
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
            size, template, padding = value
            return cls(size, template, padding)
        raise ValueError(f"a crop is {{size, template, padding}} or [size, template, padding], got {value!r}")

    def __str__(self) -> str:
        return f"{self.size} px ({self.template} template, padding {self.padding:g})"


#: dlib's face chip, the crop wherever none is named (the one place its values are stated)
DEFAULT_CROP = CropSpec()
