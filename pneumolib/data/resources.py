"""The shared resources of one piece of work (the decode cache, the lung segmenter, the device), held in one object."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..data.cache import DecodedCache
from ..data.lungs import LungSegmenter


@dataclass(frozen=True, eq=False)
class Resources:
    """What the data and the model of one piece of work share, owned in one place and passed as one object: the
    decode cache (each film decoded once per view), the lung segmenter that cache draws its crop boxes with (loaded
    when first needed, at most once per context: Grad-CAM's lung masks, the crop boxes and the lung notes all read
    this one) and the device the model runs on.

    `XRayData.resources` and `Predictor.resources` carry it; `studies.runs.open_run` gives the run's data and its
    predictor the same one. Nothing here is process-wide or built at import: a new Resources is a new, empty cache
    (the disk cache, if any, still spares the decoding)."""

    cache: DecodedCache = field(default_factory=DecodedCache.from_environment)
    device: torch.device = torch.device("cpu")

    def __post_init__(self):
        object.__setattr__(self, "device", torch.device(self.device))  # "cpu", "cuda:0" or a torch.device

    @classmethod
    def new(cls, device: str | torch.device = "cpu", segmenter: LungSegmenter | None = None) -> "Resources":
        """A fresh context: a new cache with the environment's settings (data.cache.DecodedCache.from_environment)
        whose segmenter is SEGMENTER (default: the shipped one, loaded when first needed)."""
        return cls(DecodedCache.from_environment(segmenter), device)

    @property
    def segmenter(self) -> LungSegmenter:
        """The lung segmenter of this context: the one its cache draws crop boxes with (loaded on first use)."""
        return self.cache.lung_segmenter()

    def on(self, device: str | torch.device) -> "Resources":
        """The same cache and segmenter, with the model on DEVICE."""
        return dataclasses.replace(self, device=device)

    def sharing(self, cache: DecodedCache) -> "Resources":
        """This context with CACHE as its decode cache (and so CACHE's segmenter)."""
        return self if cache is self.cache else dataclasses.replace(self, cache=cache)


def as_resources(
    given: "Resources | DecodedCache | None" = None, device: str | torch.device | None = None
) -> Resources:
    """The one mapping from what callers may pass (a Resources, a bare DecodedCache from code written before the
    context existed, or nothing) to a Resources; DEVICE, when given, replaces the context's device."""
    if isinstance(given, Resources):
        out = given
    elif isinstance(given, DecodedCache):
        out = Resources(given)
    elif given is None:
        out = Resources()
    else:
        raise TypeError(f"expected a Resources or a DecodedCache, not a {type(given).__name__}")
    return out if device is None or torch.device(device) == out.device else out.on(device)
