"""Deterministic synthetic chest X-ray phantoms, with exact lung and lesion masks, in the Kaggle layout."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.config import CLASSES

# The shipped fixture: tiny, so tests and notebooks run in seconds wherever pneumolib is installed.
FIXTURE_SIZE = 64
FIXTURE_COUNTS = {"train": 40, "val": 12, "test": 12}  # per class
FIXTURE_SEED = 2024_05_13


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint8 HxW
    lungs: np.ndarray  # bool HxW, the visible lung fields (heart and diaphragm excluded)
    lesions: np.ndarray  # bool HxW, empty for NORMAL


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _smooth_blob(yy, xx, cy, cx, r):
    return np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))


def make_phantom(rng: np.random.Generator, pneumonia: bool, size: int = FIXTURE_SIZE) -> Phantom:
    """One frontal chest phantom: body, two lung fields, heart, diaphragm domes, ribs, noise."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    j = lambda a: rng.uniform(-a, a)  # noqa: E731  small anatomical jitter

    img = np.full((size, size), 0.06)
    body = _ellipse(yy, xx, s * (0.55 + j(0.03)), s * (0.5 + j(0.03)), s * (0.52 + j(0.03)), s * (0.43 + j(0.03)))
    img[body] = 0.55 + j(0.05)

    # lung fields: two tall ellipses either side of the midline
    cy = s * (0.48 + j(0.03))
    ry, rx = s * (0.25 + j(0.02)), s * (0.13 + j(0.015))
    left = _ellipse(yy, xx, cy, s * (0.31 + j(0.02)), ry, rx)
    right = _ellipse(yy, xx, cy, s * (0.69 + j(0.02)), ry, rx)
    lungs = (left | right) & body
    img[lungs] = 0.22 + j(0.04)

    # ribs: faint bright arcs across the lungs
    phase = rng.uniform(0, 2 * np.pi)
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (yy + 0.04 * (xx - s / 2) ** 2 / s * 4) / (s * 0.1) + phase)
    img += lungs * 0.07 * ribs

    # heart: overlaps the lower medial lung on the image's right (patient's left)
    heart = _ellipse(yy, xx, s * (0.62 + j(0.02)), s * (0.56 + j(0.02)), s * (0.14 + j(0.02)), s * (0.15 + j(0.02)))
    img[heart & body] = 0.62 + j(0.04)
    # diaphragm: bright domes closing the lungs from below
    dome = yy > s * (0.70 + j(0.02)) - s * 0.06 * np.cos((xx - s / 2) / s * 2 * np.pi)
    img[dome & body] = 0.66 + j(0.04)
    lungs = lungs & ~heart & ~dome

    lesions = np.zeros_like(lungs)
    if pneumonia:
        # patchy opacities inside one or both lungs
        opacity = np.zeros_like(img)
        ys, xs = np.nonzero(lungs)
        for _ in range(int(rng.integers(2, 5))):
            k = int(rng.integers(len(ys)))
            opacity += _smooth_blob(yy, xx, ys[k] + 0.5, xs[k] + 0.5, s * rng.uniform(0.04, 0.08))
        opacity = np.clip(opacity, 0, 1) * lungs
        img += 0.38 * opacity
        lesions = opacity > 0.3

    # scanner variation: exposure, contrast, noise
    img = (img - 0.4) * rng.uniform(0.8, 1.2) + 0.4 + j(0.05)
    img += rng.normal(0, 0.025, img.shape)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Phantom(image=image, lungs=lungs, lesions=lesions)


def _file_name(label: int, patient: int, k: int) -> str:
    # Kaggle-style names, so patient-id parsing is exercised on the fixture too
    if label == 0:
        return f"IM-{patient:04d}-{k + 1:04d}.png"
    kind = "bacteria" if patient % 3 else "virus"
    return f"person{patient}_{kind}_{k + 1}.png"


def _save_png(array: np.ndarray, path: Path, mode: str) -> None:
    # compress_level=0 (stored blocks) keeps the bytes independent of the zlib build
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path, format="PNG", compress_level=0)


def write_fixture(
    root: str | Path, counts: dict[str, int] | None = None, size: int = FIXTURE_SIZE, seed: int = FIXTURE_SEED
) -> Path:
    """Write phantoms as ROOT/<split>/<class>/*.png plus ROOT/masks and ROOT/lesions; return ROOT."""
    root = Path(root)
    counts = counts or FIXTURE_COUNTS
    rng = np.random.default_rng(seed)
    patient = 1
    for split, n in counts.items():
        for label, cls in enumerate(CLASSES):
            written = 0
            while written < n:
                # every third patient has two images, so splits must be grouped by patient
                k_images = min(2 if patient % 3 == 0 else 1, n - written)
                for k in range(k_images):
                    ph = make_phantom(rng, pneumonia=bool(label), size=size)
                    name = _file_name(label, patient, k)
                    _save_png(ph.image, root / split / cls / name, "L")
                    _save_png(ph.lungs.astype(np.uint8) * 255, root / "masks" / split / cls / name, "1")
                    if label:
                        _save_png(ph.lesions.astype(np.uint8) * 255, root / "lesions" / split / cls / name, "1")
                written += k_images
                patient += 1
    return root


def fixture_dir() -> Path:
    """The fixture that ships inside the package."""
    return Path(str(resources.files("pneumolib") / "fixture_data"))


def mask_for(image_path: str | Path, kind: str = "masks") -> Path | None:
    """The fixture's exact mask for an image (ROOT/<kind>/<split>/<class>/<file>), if there is one."""
    p = Path(image_path)
    if len(p.parts) < 4:
        return None
    candidate = p.parents[2] / kind / p.parents[1].name / p.parent.name / p.name
    return candidate if candidate.is_file() else None
