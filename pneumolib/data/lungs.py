"""Lung fields: a small MONAI U-Net learned from annotated masks, shipped inside the package with its provenance."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage as ndi

from ..core.config import CLASSES
from ..core.io import CheckpointError, DataError, atomic_write
from ..core.registry import SHIPPED
from ..data.imaging import IMAGE_SUFFIXES, load_image
from ..data.transforms import Preprocessing

log = logging.getLogger(__name__)

FORMAT = "pneumolib-lungs/1"
SIZE = 128  # the segmenter's own resolution: films are squashed to SIZE x SIZE, masks resized back to the film
SPLITS = ("train", "val", "test")
# the U-Net: MONAI's, 4 down-sampling stages; about 1.6 M parameters (6 MB as float32)
UNET = dict(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
            num_res_units=2)


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
ENCODER_LEVELS = ("model.0", *(("model.1" + ".submodule.1" * k + ".submodule.0") for k in range(3)),
                  "model.1" + ".submodule.1" * 3 + ".submodule")


class _EncoderDone(Exception):
    """Raised by the hook on the U-Net's bottom level to stop a forward pass once the encoder has run."""


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
                img = next((p for p in (images / split / cls / (m.stem + s) for s in IMAGE_SUFFIXES) if p.is_file()),
                           None)
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
    x = np.stack([np.asarray(load_image(p.image).resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=3.0)) for p in pairs])
    y = np.stack([read_mask(p.mask, (SIZE, SIZE)) for p in pairs]).astype(np.float32)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).unsqueeze(1)


def postprocess(mask: np.ndarray) -> np.ndarray:
    """The two largest connected regions with their holes filled: a frontal film shows two lung fields."""
    labels, n = ndi.label(mask)
    if n > 2:
        sizes = ndi.sum(mask, labels, index=np.arange(1, n + 1))
        mask = np.isin(labels, 1 + np.argsort(sizes)[::-1][:2])
    return ndi.binary_fill_holes(mask)


class LungSegmenter:
    """A trained U-Net with its provenance; segments any film the project reads, at the film's own size."""

    def __init__(self, net: torch.nn.Module, provenance: dict[str, Any] | None = None, threshold: float = 0.5,
                 check: "LungCheck | None" = None):
        self.net, self.provenance, self.threshold = net.eval(), dict(provenance or {}), float(threshold)
        self.check = check or LungCheck()
        h = hashlib.sha256()
        for k, v in sorted(net.state_dict().items()):
            h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
        self.digest = h.hexdigest()[:12]  # which weights drew a crop box: recorded in the checkpoints trained on them
        # films' encoder statistics already computed by this segmenter (data.population.film_statistics), keyed by
        # the file's identity: every reference fit and every check in a process reads a film through it once
        self.statistics: dict[tuple, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "LungSegmenter":
        """The shipped segmenter (or one saved by `lungs train --out`), loaded with weights_only=True."""
        path = Path(path) if path else shipped_weights()
        if not path.is_file():
            raise CheckpointError(f"{path}: lung segmenter weights not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  torch raises many types for a file that is not a checkpoint
            raise CheckpointError(f"{path}: not a readable lung segmenter ({type(e).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a pneumolib lung segmenter (no format {FORMAT!r})")
        channels, problem = _segmenter_problem(state)
        if problem:
            raise CheckpointError(f"{path}: malformed lung segmenter ({problem})")
        with torch.random.fork_rng():  # the weights are loaded next: building the net must not move the caller's RNG
            net = build_unet(channels)
        net.load_state_dict(state["state_dict"])  # names and shapes were compared before the net was built
        provenance = state.get("provenance")
        return cls(net, provenance if isinstance(provenance, dict) else {}, float(state.get("threshold", 0.5)),
                   LungCheck(**state.get("check", {})))

    def save(self, path: str | Path) -> Path:
        state = {"format": FORMAT, "size": SIZE, "channels": list(self.provenance.get("channels", UNET["channels"])),
                 "threshold": self.threshold,
                 "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                 "provenance": self.provenance, "check": self.check.to_dict()}
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    @torch.no_grad()
    def probabilities(self, films: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """P(lung) per pixel, N x SIZE x SIZE, for uint8 films N x 1 x SIZE x SIZE."""
        self.net.eval()
        out = [torch.sigmoid(self.net(INPUT(films[i:i + batch_size]))) for i in range(0, len(films), batch_size)]
        return torch.cat(out)[:, 0] if out else torch.zeros(0, SIZE, SIZE)

    @torch.no_grad()
    def encoder_statistics(self, films: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """N x D: per film (uint8, any size, squashed to SIZE x SIZE as for its mask), the mean and standard deviation
        over the film of every channel of the U-Net's five encoder levels (16 .. 256 channels, D = 992), in
        ENCODER_LEVELS order. What the segmenter learned about whole paediatric films, from edges to the thorax's
        layout: data.population compares a film's statistics with the training films'."""
        self.net.eval()
        modules = dict(self.net.named_modules())
        out: dict[str, list[torch.Tensor]] = {name: [] for name in ENCODER_LEVELS}

        def keep(name):
            def hook(module, inputs, output):
                out[name].append(torch.cat([output.mean((2, 3)), output.std((2, 3))], 1))
                if name == ENCODER_LEVELS[-1]:  # the bottom level is the encoder's last: the decoder is not needed
                    raise _EncoderDone
            return hook

        hooks = [modules[name].register_forward_hook(keep(name)) for name in ENCODER_LEVELS]
        try:
            for i in range(0, len(films), batch_size):
                small = [squash(f) for f in films[i:i + batch_size]]
                try:
                    self.net(INPUT(torch.from_numpy(np.stack(small))[:, None]))
                except _EncoderDone:
                    pass
        finally:
            for h in hooks:
                h.remove()
        if not films:
            return np.zeros((0, 2 * sum(UNET["channels"])), np.float32)
        return torch.cat([torch.cat(out[name]) for name in ENCODER_LEVELS], 1).numpy()

    def segment_array(self, film: np.ndarray) -> np.ndarray:
        """A bool lung mask at the film's own size (uint8 HxW in, any size): predicted at SIZE, resized back."""
        return self.masks_for(torch.from_numpy(squash(film))[None, None], [film.shape])[0]

    def masks_for(self, films: torch.Tensor, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Masks for uint8 films N x 1 x SIZE x SIZE, each resized back to its film's (h, w) and post-processed."""
        prob = self.probabilities(films)
        out = []
        for p, (h, w) in zip(prob, shapes):
            big = F.interpolate(p[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            out.append(postprocess(big.numpy() >= self.threshold))
        return out

    def segment_file(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """(film as uint8 grey HxW at its own size, its bool lung mask): any film imaging reads, DICOM included."""
        film = np.asarray(load_image(path), dtype=np.uint8)
        return film, self.segment_array(film)


    def lung_fields(self, films: list[np.ndarray], margin: float) -> list[tuple["LungBox", np.ndarray]]:
        """Each uint8 film's (any size) lung field: its bounding box, as fractions of its height and width, with
        `margin` of the box's size added on each side, and the whole film's bool lung mask at SIZE x SIZE (the film
        squashed, the frame the box's fractions also describe). The box is the whole film, with the reason, when the
        mask fails the check (a film whose lungs are not found is flagged, never cropped to a wrong box): one
        quality decision, which the crop, Grad-CAM's lung statistics and the shortcut audit all read (the decode
        cache keeps both). Segmented in batches."""
        if not films:
            return []
        small = [squash(f) for f in films]
        masks = self.masks_for(torch.from_numpy(np.stack(small))[:, None], [(SIZE, SIZE)] * len(small))
        return [(box_of(m, film_problem(f) or self.check.problems(m), margin), m) for f, m in zip(films, masks)]


MAX_UNET_CHANNELS = 1024


def _segmenter_problem(state: dict[str, Any]) -> tuple[tuple[int, ...], str | None]:
    """(the U-Net's channels, why STATE is not a segmenter pneumolib wrote or None): the channel list, the weights'
    names and shapes against that architecture built on the meta device (no memory), the mask threshold and the
    check's limits, all before a real network is allocated."""
    import math
    channels = state.get("channels", UNET["channels"])
    if (not isinstance(channels, (list, tuple)) or not 2 <= len(channels) <= 6
            or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_UNET_CHANNELS
                       for c in channels)):
        return (), f"channels {str(channels)[:60]} must be 2 to 6 integers from 1 to {MAX_UNET_CHANNELS}"
    channels = tuple(channels)
    sd = state.get("state_dict")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        return channels, "state_dict must map names to tensors"
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build_unet(channels).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if got != want:
        diff = sorted(set(got) ^ set(want)) or [k for k in want if got[k] != want[k]]
        return channels, f"the weights do not fit a U-Net of channels {list(channels)} ({diff[0]})"
    if not all(torch.isfinite(v.float()).all() for v in sd.values() if v.is_floating_point()):
        return channels, "the weights are not finite"
    t = state.get("threshold", 0.5)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t < 1.0:
        return channels, f"threshold {t!r} must be a number between 0 and 1"
    check = state.get("check", {})
    names = set(LungCheck.__dataclass_fields__)
    if not isinstance(check, dict) or set(check) - names:
        return channels, f"check must be a mapping of {', '.join(sorted(names))}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0
               for v in check.values()):
        return channels, "the check's limits must be numbers from 0 to 1"
    return channels, None


def film_problem(film: np.ndarray) -> str:
    """'' for a film with a picture in it; else why no lung can be found there (no pixels, one grey level): the lung
    check refuses such a film whatever mask the network draws on it."""
    a = np.asarray(film)
    if a.size == 0:
        return "empty film (no pixels)"
    if a.min() == a.max():
        return f"uniform film (every pixel {a.flat[0]}): no picture"
    return ""


def box_of(mask: np.ndarray, problem: str, margin: float) -> "LungBox":
    """The mask's bounding box plus margin, as fractions; the whole film when the mask has a problem."""
    if problem or not mask.any():
        return LungBox(0.0, 1.0, 0.0, 1.0, f"lungs not found ({problem or 'empty mask'}): whole film used")
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min() / h, (ys.max() + 1) / h, xs.min() / w, (xs.max() + 1) / w
    dy, dx = margin * (y1 - y0), margin * (x1 - x0)
    return LungBox(float(max(0.0, y0 - dy)), float(min(1.0, y1 + dy)), float(max(0.0, x0 - dx)),
                   float(min(1.0, x1 + dx)))


SHIPPED.register("lung segmenter", lambda: shipped_weights(), lambda path: LungSegmenter.load(path))


def shipped_segmenter() -> LungSegmenter:
    """The segmenter shipped in the package, loaded (and its digest computed) once per process and shared by every
    consumer: the decode cache's crop boxes, Grad-CAM's lung masks, the shortcut audit, the CLI. Keyed by the weight
    file's size and modification time, so weights re-shipped by `lungs train --ship` are read again. Inference only:
    train_segmenter builds its own network."""
    try:
        return SHIPPED.get("lung segmenter")
    except OSError:
        raise CheckpointError(f"{shipped_weights()}: lung segmenter weights not found") from None


shipped_segmenter.cache_clear = lambda: SHIPPED.forget("lung segmenter")  # tests; a caller re-shipping in-process


def shipped_digest() -> str:
    """Digest of the shipped segmenter's weights (what a lung-cropped checkpoint records); computed once."""
    return shipped_segmenter().digest


@dataclass(frozen=True)
class LungBox:
    """A crop box as fractions of the film (y0, y1, x0, x1), and why the whole film was kept ('' = lungs found)."""

    y0: float
    y1: float
    x0: float
    x1: float
    problem: str = ""

    def pixels(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) in pixels of an h x w film; at least one pixel each way."""
        eps = 1e-6  # 0.86 * 1000 is 860.0000000001 in floating point: not a reason for one more row
        top, left = int(np.floor(self.y0 * h + eps)), int(np.floor(self.x0 * w + eps))
        return (top, max(top + 1, int(np.ceil(self.y1 * h - eps))), left,
                max(left + 1, int(np.ceil(self.x1 * w - eps))))

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


# --- training and evaluation ---------------------------------------------------------------------------------
COVERAGE_DILATIONS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.10)
COVERAGE_KEEP = 0.98  # a film's annotated lung counts as kept when this share of it is inside the dilated mask
COVERAGE_FILMS = 0.95  # the rule: the smallest dilation keeping COVERAGE_KEEP of the lung on this share of each class


def mask_coverage(seg: LungSegmenter, pairs: list[MaskPair], dilations=COVERAGE_DILATIONS,
                  margin: float = 0.08) -> dict[str, Any]:
    """How much of each film's annotated lung field the lung-mask view keeps, per dilation and per class.

    Args:
        seg: the segmenter whose masks draw the view (the crop's own: lung_fields at SIZE).
        pairs: annotated films (the validation split's: the choice must not see the test split).
        dilations: the candidate dilations, as shares of the film's width.
        margin: the crop box's margin (the annotated lung outside the box is lost whatever the dilation).

    Returns:
        {"dilations": {d: {class: {"n", "mean", "p05", "kept_share"}}}, "box": {class: ...}, "chosen": d or None,
        "rule": text}: kept_share is the share of films keeping at least COVERAGE_KEEP of their annotated lung;
        chosen is the smallest dilation whose kept_share is at least COVERAGE_FILMS for every class.
    """
    per: dict[float, dict[int, list[float]]] = {d: {0: [], 1: []} for d in dilations}
    box_cov: dict[int, list[float]] = {0: [], 1: []}
    for p in pairs:
        film = np.asarray(Image.open(p.image).convert("L"))
        box, mask = seg.lung_fields([film], margin)[0]
        truth = read_mask(p.mask, (SIZE, SIZE))
        if not truth.any():
            continue
        inside_box = np.zeros_like(truth)
        top, bottom, left, right = box.pixels(SIZE, SIZE)
        inside_box[top:bottom, left:right] = True
        box_cov[p.label].append(float((truth & inside_box).sum() / truth.sum()))
        for d in dilations:
            kept = dilate(mask, d) & inside_box if not box.problem else inside_box
            per[d][p.label].append(float((truth & kept).sum() / truth.sum()))

    def stats(v: list[float]) -> dict[str, float]:
        a = np.asarray(v)
        return {"n": int(len(a)), "mean": float(a.mean()) if len(a) else float("nan"),
                "p05": float(np.percentile(a, 5)) if len(a) else float("nan"),
                "kept_share": float((a >= COVERAGE_KEEP).mean()) if len(a) else float("nan")}

    table = {d: {CLASSES[c]: stats(v) for c, v in by.items()} for d, by in per.items()}
    ok = [d for d in dilations if all(s["n"] and s["kept_share"] >= COVERAGE_FILMS for s in table[d].values())]
    return {"dilations": table, "box": {CLASSES[c]: stats(v) for c, v in box_cov.items()},
            "chosen": min(ok) if ok else None,
            "rule": f"the smallest dilation at which at least {COVERAGE_FILMS:.0%} of each class's annotated films keep "
                    f"at least {COVERAGE_KEEP:.0%} of their annotated lung inside the view"}


def format_coverage(r: dict[str, Any]) -> str:
    """The coverage table, one row per dilation."""
    lines = [f"{'dilation':>9}  {'NORMAL kept / mean / p05':>27}  {'PNEUMONIA kept / mean / p05':>30}"]
    for d, by in r["dilations"].items():
        cells = [f"{by[c]['kept_share']:.3f} / {by[c]['mean']:.3f} / {by[c]['p05']:.3f}" for c in CLASSES]
        lines.append(f"{d:>9.2f}  {cells[0]:>27}  {cells[1]:>30}")
    b = r["box"]
    lines.append(f"{'box only':>9}  " + "  ".join(
        f"{b[c]['kept_share']:.3f} / {b[c]['mean']:.3f} / {b[c]['p05']:.3f}".rjust(27 if c == 'NORMAL' else 30)
        for c in CLASSES))
    lines.append(f"chosen: {r['chosen']} ({r['rule']}); n = " +
                 ", ".join(f"{c} {r['box'][c]['n']}" for c in CLASSES))
    return "\n".join(lines)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|); 1.0 when both are empty."""
    s = pred.sum() + truth.sum()
    return float(2 * np.logical_and(pred, truth).sum() / s) if s else 1.0


def evaluate_pairs(seg: LungSegmenter, pairs: list[MaskPair]) -> dict[str, Any]:
    """Dice of each film's predicted mask against its annotation, at the annotation's (the film's) own size."""
    if not pairs:
        return {"n": 0, "dice_mean": float("nan"), "dice_p05": float("nan"), "dice": []}
    x, _ = stack_pairs(pairs)
    truths = [read_mask(p.mask) for p in pairs]
    preds = seg.masks_for(x, [t.shape for t in truths])
    d = np.array([dice(p, t) for p, t in zip(preds, truths)])
    return {"n": int(len(d)), "dice_mean": float(d.mean()), "dice_p05": float(np.percentile(d, 5)),
            "dice_min": float(d.min()), "dice": [float(v) for v in d], "films": [str(p.image) for p in pairs]}


def plot_comparison(seg: LungSegmenter, pairs: list[MaskPair], dices: list[float], n_worst: int = 4, n_other: int = 4,
                    seed: int = 0):
    """A figure: the n_worst films by Dice and n_other others (seeded), each with the annotated mask's outline
    (white) and the learned one's (green), titled with the Dice."""
    import matplotlib.pyplot as plt

    order = np.argsort(dices)
    rest = np.random.default_rng(seed).permutation(order[n_worst:])[:n_other]
    chosen = [*order[:n_worst], *sorted(rest, key=lambda i: dices[i])]
    fig, axes = plt.subplots(2, (len(chosen) + 1) // 2, figsize=(2.4 * ((len(chosen) + 1) // 2), 5.4))
    for ax, i in zip(np.ravel(axes), chosen):
        film = np.asarray(load_image(pairs[i].image), dtype=np.uint8)
        truth, pred = read_mask(pairs[i].mask, film.shape), seg.segment_array(film)
        rgb = overlay(film, pred)
        edge = truth & ~ndi.binary_erosion(truth, iterations=max(1, min(truth.shape) // 200))
        rgb[edge] = (255, 255, 255)
        ax.imshow(rgb)
        ax.set_title(f"{'worst ' if i in order[:n_worst] else ''}Dice {dices[i]:.3f}\n{pairs[i].image.name[:22]}",
                     fontsize=7)
        ax.axis("off")
    for ax in np.ravel(axes)[len(chosen):]:
        ax.axis("off")
    fig.suptitle("lung masks: annotated (white) vs learned (green)", fontsize=9)
    fig.tight_layout()
    return fig


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
        s = mask_stats(mask, self.min_component)
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
    return {"area": float(mask.mean()), "components": int(len(lungs)),
            "pair_ratio": float(lungs[1] / lungs[0]) if len(lungs) >= 2 else 0.0,
            "edge_contact": run, "edge_side": side}


def calibrate_check(masks: list[np.ndarray], coverage: float = 0.995, slack: float = 0.1) -> LungCheck:
    """Limits that pass `coverage` of the given (annotated) masks on each statistic, widened by `slack` (a share of
    the limit): the check then fails an annotated mask only where annotators drew something unusual."""
    st = [mask_stats(m) for m in masks]
    q = (1 - coverage) * 100

    def pct(k, p):
        return float(np.percentile([s[k] for s in st], p))
    return LungCheck(min_area=round(pct("area", q) * (1 - slack), 3),
                     max_area=round(min(1.0, pct("area", 100 - q) * (1 + slack)), 3),
                     min_pair_ratio=round(pct("pair_ratio", q) * (1 - slack), 3),
                     max_edge_contact=round(min(1.0, pct("edge_contact", 100 - q) * (1 + slack) + 0.02), 3))


def qc_report(seg: LungSegmenter, pairs: list[MaskPair], good_dice: float = 0.9) -> dict[str, Any]:
    """The check's pass rate on the predicted masks, and its own error rates against the annotations: annotated
    masks it fails (false fail), predicted masks with Dice below good_dice that it passes (false pass)."""
    check = seg.check
    x, _ = stack_pairs(pairs)
    truths = [read_mask(p.mask) for p in pairs]
    preds = seg.masks_for(x, [t.shape for t in truths])
    passed = np.array([not check.problems(m) for m in preds])
    truth_fail = np.array([bool(check.problems(t)) for t in truths])
    bad = np.array([dice(p, t) < good_dice for p, t in zip(preds, truths)])
    return {"qc": check.to_dict(), "qc_pass_rate": float(passed.mean()), "qc_false_fail": int(truth_fail.sum()),
            "qc_false_fail_rate": float(truth_fail.mean()), "qc_bad_masks": int(bad.sum()),
            "qc_false_pass": int((bad & passed).sum()), "qc_failed": [str(p.image) for p, ok in zip(pairs, passed)
                                                                     if not ok]}


def qc_on_films(seg: LungSegmenter, paths) -> dict[str, Any]:
    """The check's pass rate on the segmenter's masks of every given film (annotated or not), and the failures."""
    failed = {}
    paths = list(paths)
    for p in paths:
        _, mask = seg.segment_file(p)
        problem = seg.check.problems(mask)
        if problem:
            failed[str(p)] = problem
    return {"n_films": len(paths), "qc_pass_rate_all_films": 1 - len(failed) / len(paths) if paths else float("nan"),
            "qc_failed_all_films": failed}


def segment_files(seg: LungSegmenter, files, out_dir: str | Path, say=print) -> list:
    """<stem>_lungs.png (white = lung, the film's own size) and <stem>_lungs_overlay.png for every readable film;
    returns the refused files (ImageError), never raises for one bad film."""
    from ..core.io import make_dir, save_image
    from ..data.imaging import ImageError

    out = make_dir(out_dir)
    refused = []
    for f in map(Path, files):
        try:
            film, mask = seg.segment_file(f)
        except (ImageError, OSError) as e:
            refused.append(e if isinstance(e, ImageError) else ImageError(f, str(e)))
            continue
        save_image(Image.fromarray((mask * 255).astype(np.uint8)), out / f"{f.stem}_lungs.png")
        save_image(Image.fromarray(overlay(film, mask)), out / f"{f.stem}_lungs_overlay.png")
        problem = film_problem(film) or seg.check.problems(mask)
        say(f"{f}\tlung area {mask.mean():.3f}\tcheck {'passed' if not problem else 'FAILED: ' + problem}")
    return refused


def overlay(film: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The film in grey with the lung mask's outline in green (H x W x 3 uint8)."""
    rgb = np.repeat(film[..., None], 3, axis=2).copy()
    edge = mask & ~ndi.binary_erosion(mask, iterations=max(1, min(mask.shape) // 200))
    rgb[edge] = (0, 255, 0)
    return rgb
