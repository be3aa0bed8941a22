"""The lung segmenter (MONAI U-Net): its weights checked before its network is built, the shipped one loaded once."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core.io import CheckpointError, atomic_write
from ..core.registry import SHIPPED
from ..data.imaging import load_image
from ..data.lungs_masks import (
    ENCODER_LEVELS,
    INPUT,
    SIZE,
    UNET,
    LungBox,
    LungCheck,
    box_of,
    build_unet,
    lung_numbers,
    lung_words,
    postprocess,
    shipped_weights,
    squash,
)

log = logging.getLogger(__name__)


FORMAT = "pneumolib-lungs/1"


class _EncoderDone(Exception):
    """Raised by the hook on the U-Net's bottom level to stop a forward pass once the encoder has run."""


class LungSegmenter:
    """A trained U-Net with its provenance; segments any film the project reads, at the film's own size."""

    def __init__(
        self,
        net: torch.nn.Module,
        provenance: dict[str, Any] | None = None,
        threshold: float = 0.5,
        check: "LungCheck | None" = None,
    ):
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
        return cls(
            net,
            provenance if isinstance(provenance, dict) else {},
            float(state.get("threshold", 0.5)),
            LungCheck(**state.get("check", {})),
        )

    def save(self, path: str | Path) -> Path:
        state = {
            "format": FORMAT,
            "size": SIZE,
            "channels": list(self.provenance.get("channels", UNET["channels"])),
            "threshold": self.threshold,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "provenance": self.provenance,
            "check": self.check.to_dict(),
        }
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    @torch.no_grad()
    def probabilities(self, films: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """P(lung) per pixel, N x SIZE x SIZE, for uint8 films N x 1 x SIZE x SIZE."""
        self.net.eval()
        out = [torch.sigmoid(self.net(INPUT(films[i : i + batch_size]))) for i in range(0, len(films), batch_size)]
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
                small = [squash(f) for f in films[i : i + batch_size]]
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
        numbers = [lung_numbers(f, m, self.check) for f, m in zip(films, masks)]
        return [(box_of(m, lung_words(n), margin, n), m) for m, n in zip(masks, numbers)]


MAX_UNET_CHANNELS = 1024


def _segmenter_problem(state: dict[str, Any]) -> tuple[tuple[int, ...], str | None]:
    """(the U-Net's channels, why STATE is not a segmenter pneumolib wrote or None): the channel list, the weights'
    names and shapes against that architecture built on the meta device (no memory), the mask threshold and the
    check's limits, all before a real network is allocated."""
    import math

    channels = state.get("channels", UNET["channels"])
    if (
        not isinstance(channels, (list, tuple))
        or not 2 <= len(channels) <= 6
        or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_UNET_CHANNELS for c in channels)
    ):
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
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0
        for v in check.values()
    ):
        return channels, "the check's limits must be numbers from 0 to 1"
    return channels, None


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
