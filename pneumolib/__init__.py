"""pneumolib: a reproducible, honest chest X-ray pneumonia classifier that re-runs a dated experiment log.

The public API (pneumolib.api), imported on first use so that `import pneumolib` stays light::

    import pneumolib
    predictor = pneumolib.load("runs/10_recommended/seed0")        # a checkpoint file or a run folder
    records, refused = pneumolib.predict(predictor, ["film.dcm", "film.jpeg"])
"""

from .core.version import __version__

__all__ = ["__version__", "Prediction", "load", "predict", "explain", "run", "experiments", "segment_lungs"]


def __getattr__(name: str):
    """The API's names, imported when first asked for (torch is not imported by `import pneumolib`)."""
    if name in __all__ and name != "__version__":
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pneumolib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
