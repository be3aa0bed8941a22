"""Lung masks and boxes: the U-Net's input and architecture, annotated masks, the quality check, the crop box and the lung-mask view."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

from ..core.config import CLASSES, SPLITS
from ..core.io import DataError
from ..data.imaging import IMAGE_SUFFIXES, load_image
from ..data.transforms import Preprocessing

SIZE = 128  # the segmenter's own resolution: films are squashed to SIZE x SIZE, masks resized back to the film


# the U-Net: MONAI's, 4 down-sampling stages; about 1.6 M parameters (6 MB as float32)
UNET = dict(
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    channels=(16, 32, 64, 128, 256),
    strides=(2, 2, 2, 2),
    num_res_units=2,
)


def shipped_weights() -> Path:
    """The lung segmenter that ships inside the package."""
    return Path(str(resources.files("pneumolib") / "weights" / "lungs_unet.pt"))


def build_unet(channels: tuple[int, ...] = UNET["channels"]) -> torch.nn.Module:
    """MONAI's U-Net with UNET's settings; `channels` per stage (the tests train a narrower one in seconds)."""
    from monai.networks.nets import UNet

    return UNet(**{**UNET, "channels": tuple(channels), "strides": (2,) * (len(channels) - 1)})


# the input the U-Net sees: histogram-equalised grey at SIZE px, so exposure and contrast curves do not matter
INPUT = Preprocessing(image_size=SIZE, in_channels=1, normalize="equalize")


# the U-Net's encoder levels, finest first (MONAI's UNet nests each deeper level in a SkipConnection's submodule)
ENCODER_LEVELS = (
    "model.0",
    *(("model.1" + ".submodule.1" * k + ".submodule.0") for k in range(3)),
    "model.1" + ".submodule.1" * 3 + ".submodule",
)


def squash(film: np.ndarray) -> np.ndarray:
    """A uint8 film of any size squashed to the segmenter's SIZE x SIZE (an empty film: zeros)."""
    if not film.size:
        return np.zeros((SIZE, SIZE), np.uint8)
    return np.array(Image.fromarray(film).resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=3.0))


@dataclass(frozen=True)
class MaskPair:
    """One film and its annotated lung-field mask (same geometry: the mask was squashed as the film was)."""

    image: Path
    mask: Path
    split: str
    label: int


def discover_masks(data_dir: str | Path) -> dict[str, list[MaskPair]]:
    """Films with annotated masks, by split: DIR/lung_masks/<split>/<class>/<name>.png beside DIR/chest_xray/ (the
    shared data), or DIR/masks/<split>/<class>/<name> beside DIR/<split>/ (the bundled fixture's layout)."""

    root = Path(data_dir).expanduser()
    if (root / "lung_masks").is_dir():
        masks, images = root / "lung_masks", root / "chest_xray"
    elif (root / "masks").is_dir():
        masks, images = root / "masks", root
    else:
        raise DataError(f"{root}: no lung_masks/ (beside chest_xray/) or masks/ folder of annotated lung fields")
    out: dict[str, list[MaskPair]] = {}
    for split in SPLITS:
        for label, cls in enumerate(CLASSES):
            folder = masks / split / cls
            for m in sorted(folder.glob("*.png")) if folder.is_dir() else []:
                img = next(
                    (p for p in (images / split / cls / (m.stem + s) for s in IMAGE_SUFFIXES) if p.is_file()), None
                )
                if img is None:
                    raise DataError(f"{m}: annotated mask without its film in {images / split / cls}")
                out.setdefault(split, []).append(MaskPair(img, m, split, label))
    if not out.get("train") and not out.get("test"):
        raise DataError(f"{masks}: no annotated masks (<split>/<class>/<name>.png)")
    return out


def annotated_mask(image_path: str | Path) -> Path | None:
    """The human-annotated lung mask of a film, if it has one: DATA/lung_masks/<split>/<class>/<name>.png for
    DATA/chest_xray/<split>/<class>/<name>.* (the shared data's layout), or the bundled fixture's exact phantom mask.
    A user's own folders are not searched for masks."""
    from ..data.fixture import fixture_dir, mask_for

    p = Path(image_path)
    if len(p.parts) < 5:
        return None
    try:
        p.resolve().relative_to(fixture_dir().resolve())
        return mask_for(p)
    except ValueError:
        pass
    if p.parents[2].name != "chest_xray":
        return None
    candidate = p.parents[3] / "lung_masks" / p.parents[1].name / p.parent.name / f"{p.stem}.png"
    return candidate if candidate.is_file() else None


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An annotated mask as bool HxW (white = lung), resized (nearest) to size = (h, w) when given."""
    im = Image.open(path).convert("L")
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(im) > 127


def stack_pairs(pairs: list[MaskPair]) -> tuple[torch.Tensor, torch.Tensor]:
    """Films (uint8 N x 1 x SIZE x SIZE) and masks (float N x 1 x SIZE x SIZE in {0, 1}) at the segmenter's size."""
    x = np.stack(
        [np.asarray(load_image(p.image).resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=3.0)) for p in pairs]
    )
    y = np.stack([read_mask(p.mask, (SIZE, SIZE)) for p in pairs]).astype(np.float32)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).unsqueeze(1)


def postprocess(mask: np.ndarray) -> np.ndarray:
    """The two largest connected regions with their holes filled: a frontal film shows two lung fields."""
    labels, n = ndi.label(mask)
    if n > 2:
        sizes = ndi.sum(mask, labels, index=np.arange(1, n + 1))
        mask = np.isin(labels, 1 + np.argsort(sizes)[::-1][:2])
    return ndi.binary_fill_holes(mask)


# --- quality check -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LungCheck:
    """What a usable lung mask of a frontal film looks like: a plausible area, two lungs of not too unequal size,
    and little contact with the image border (a leak runs along it). Limits calibrated on annotated masks
    (calibrate_check), stored with the segmenter's weights."""

    min_area: float = 0.10  # share of the image
    max_area: float = 0.60
    min_component: float = 0.05  # smaller regions are specks, not lungs (share of the mask)
    min_pair_ratio: float = 0.25  # smaller lung / larger lung
    max_edge_contact: float = 0.25  # share of the left, right or top border the mask may touch

    def problems(self, mask: np.ndarray) -> str:
        """'' for a mask that passes, else the first reason it fails."""
        return self.words(mask_stats(mask, self.min_component))

    def words(self, s: dict[str, Any]) -> str:
        """The rule, on a mask's numbers (mask_stats): '' when they pass, else the first reason they fail. Kept
        apart from the numbers so a stored check (the decode cache's) is worded by the rule of the day."""
        if not self.min_area <= s["area"] <= self.max_area:
            # three decimals, as the calibrated limits are stored: at two, 0.176 against 0.179 read "0.18 outside 0.18"
            return f"area {s['area']:.3f} outside {self.min_area:.3f}-{self.max_area:.3f}"
        if s["components"] != 2:
            return f"{s['components']} lung component(s), not 2"
        if s["pair_ratio"] < self.min_pair_ratio:
            return f"lungs of very unequal size ({s['pair_ratio']:.2f}:1)"
        if s["edge_contact"] > self.max_edge_contact:
            return f"runs along the {s['edge_side']} image border ({s['edge_contact']:.0%} of it)"
        return ""

    def to_dict(self) -> dict[str, float]:
        from dataclasses import asdict

        return asdict(self)


def mask_stats(mask: np.ndarray, min_component: float = 0.05) -> dict[str, Any]:
    """Area share, number of lung-sized components, smaller/larger lung ratio, and the longest border contact."""
    mask = np.asarray(mask, bool)
    total = int(mask.sum())
    labels, n = ndi.label(mask)
    sizes = np.sort(ndi.sum(mask, labels, index=np.arange(1, n + 1)))[::-1] / max(total, 1) if n else np.zeros(0)
    lungs = sizes[sizes >= min_component]
    sides = {"left": mask[:, 0], "right": mask[:, -1], "top": mask[0, :]}
    side, run = max(((k, float(v.mean())) for k, v in sides.items()), key=lambda kv: kv[1])
    return {
        "area": float(mask.mean()),
        "components": int(len(lungs)),
        "pair_ratio": float(lungs[1] / lungs[0]) if len(lungs) >= 2 else 0.0,
        "edge_contact": run,
        "edge_side": side,
    }


@dataclass(frozen=True)
class LungBox:
    """A crop box as fractions of the film (y0, y1, x0, x1), and why the whole film was kept ('' = lungs found).
    `numbers`: the lung check's numbers the decision came from (lung_numbers), when the segmenter drew the box: what
    a stored box keeps, its words rebuilt by the current rule when read (from_record)."""

    y0: float
    y1: float
    x0: float
    x1: float
    problem: str = ""
    numbers: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "LungBox":
        """A stored box (the decode cache's), its words rebuilt from its numbers with the current rule. A record
        without numbers (one that kept only the words) is refused: ValueError, and the caller decodes again."""
        numbers = record.get("numbers")
        if not isinstance(numbers, dict):
            raise ValueError("a stored lung box without its check's numbers")
        words = box_words(lung_words(numbers), not numbers["mask"]["area"])
        return cls(*(float(record[k]) for k in ("y0", "y1", "x0", "x1")), words, numbers)

    def pixels(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) in pixels of an h x w film; at least one pixel each way."""
        eps = 1e-6  # 0.86 * 1000 is 860.0000000001 in floating point: not a reason for one more row
        top, left = int(np.floor(self.y0 * h + eps)), int(np.floor(self.x0 * w + eps))
        return (
            top,
            max(top + 1, int(np.ceil(self.y1 * h - eps))),
            left,
            max(left + 1, int(np.ceil(self.x1 * w - eps))),
        )

    def crop(self, film: np.ndarray) -> np.ndarray:
        top, bottom, left, right = self.pixels(*film.shape[:2])
        return film[top:bottom, left:right]


def mask_in_view(mask: np.ndarray, box: LungBox | None, shape: tuple[int, int]) -> np.ndarray:
    """A film-frame bool mask in a model input's frame: cut to the crop box (if any), resized (nearest) to shape."""
    if box is not None:
        mask = box.crop(mask)
    im = Image.fromarray(np.ascontiguousarray(mask).astype(np.uint8) * 255)
    if im.size != (shape[1], shape[0]):
        im = im.resize((shape[1], shape[0]), Image.NEAREST)
    return np.asarray(im) > 127


def dilate(mask: np.ndarray, fraction: float) -> np.ndarray:
    """The bool mask grown by `fraction` of its width (a disc: every pixel within that distance of the mask)."""
    radius = fraction * mask.shape[1]
    if radius <= 0 or not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask) <= radius


def mask_film(film: np.ndarray, box: LungBox, mask: np.ndarray, size: int, dilation: float) -> np.ndarray:
    """The lung-mask view of a film: its crop (crop_film), with every pixel outside the lung mask grown by
    `dilation` of the film's width set to 0 and every pixel inside it at least 1 (so 0 means outside, which
    Preprocessing's 'equalize_masked' leaves out). A film whose lungs were not found (box.problem) is not masked:
    its mask failed the check, and the whole film is used, flagged, as for the plain crop."""
    out = crop_film(film, box, size)
    if box.problem:
        return out
    keep = mask_in_view(dilate(mask, dilation), box, out.shape)
    out = np.where(keep, np.maximum(out, 1), 0).astype(np.uint8)
    return out


def crop_film(film: np.ndarray, box: LungBox, size: int) -> np.ndarray:
    """A uint8 film at its own size -> its box, squashed to size x size: the one place a crop is made, for training
    and inference alike (the box is found on the full film, so the crop does not depend on the file's size)."""
    im = Image.fromarray(np.ascontiguousarray(box.crop(film)))
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8).copy()


def film_facts(film: np.ndarray) -> dict[str, Any]:
    """The numbers film_problem judges: how many pixels, the lowest and the highest grey level."""
    a = np.asarray(film)
    if a.size == 0:
        return {"pixels": 0, "lo": 0, "hi": 0}
    return {"pixels": int(a.size), "lo": a.min().item(), "hi": a.max().item()}


def film_words(facts: dict[str, Any]) -> str:
    """The rule on film_facts: '' for a film with a picture in it, else why no lung can be found there."""
    if not facts["pixels"]:
        return "empty film (no pixels)"
    if facts["lo"] == facts["hi"]:
        return f"uniform film (every pixel {facts['lo']}): no picture"
    return ""


def film_problem(film: np.ndarray) -> str:
    """'' for a film with a picture in it; else why no lung can be found there (no pixels, one grey level): the lung
    check refuses such a film whatever mask the network draws on it."""
    return film_words(film_facts(film))


def lung_numbers(film: np.ndarray, mask: np.ndarray, check: LungCheck) -> dict[str, Any]:
    """What one film's lung check decides from, as numbers: the film's facts (film_facts), the mask's (mask_stats)
    and the check's limits. The decode cache stores these, never the sentence, and lung_words words them."""
    return {"film": film_facts(film), "mask": mask_stats(mask, check.min_component), "limits": check.to_dict()}


def lung_words(numbers: dict[str, Any]) -> str:
    """The current rule on lung_numbers: '' when the film and its mask pass, else the first reason they fail."""
    return film_words(numbers["film"]) or LungCheck(**numbers["limits"]).words(numbers["mask"])


def box_words(problem: str, empty: bool) -> str:
    """What a box says about its film: '' when the lungs were found, else why the whole film was kept."""
    return f"lungs not found ({problem or 'empty mask'}): whole film used" if problem or empty else ""


def box_of(mask: np.ndarray, problem: str, margin: float, numbers: dict[str, Any] | None = None) -> "LungBox":
    """The mask's bounding box plus margin, as fractions; the whole film when the mask has a problem. NUMBERS: the
    check's numbers (lung_numbers) the box keeps, so its words can be rebuilt (LungBox.from_record)."""
    if problem or not mask.any():
        return LungBox(0.0, 1.0, 0.0, 1.0, box_words(problem, True), numbers)
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min() / h, (ys.max() + 1) / h, xs.min() / w, (xs.max() + 1) / w
    dy, dx = margin * (y1 - y0), margin * (x1 - x0)
    return LungBox(
        float(max(0.0, y0 - dy)),
        float(min(1.0, y1 + dy)),
        float(max(0.0, x0 - dx)),
        float(min(1.0, x1 + dx)),
        "",
        numbers,
    )
