"""One checkpoint file: weights + config + classes + preprocessing + threshold, and a predictor rebuilt from it."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.config import CLASSES, ExperimentConfig
from ..core.io import CheckpointError, atomic_write  # noqa: F401  (CheckpointError: re-exported)
from ..data.dataset import DecodedCache, Resources, as_resources, unlabelled
from ..data.imaging import ImageError, exif_orientation
from ..data.lungs import shipped_digest
from ..data.population import PopulationReference
from ..data.transforms import Preprocessing
from ..models.inference import combine_of, predict_proba, probabilities, view_outputs
from ..models.networks import COMBINE, Ensemble, build_model, members
from ..models.ood_score import flag, population_flag

FORMAT = "pneumolib-checkpoint/1"


class ChannelMismatch(ValueError):
    """Input whose channel count differs from what the checkpoint was trained on (the log's entry 4)."""


def preprocessing_for(config: ExperimentConfig) -> Preprocessing:
    """What a model trained with `config` needs at inference; a lung crop records the digest of the segmenter
    that drew its boxes (the shipped one), so a checkpoint is never served boxes from another."""
    segmenter = shipped_digest() if config.crop != "none" else ""
    return Preprocessing(
        image_size=config.image_size,
        in_channels=config.in_channels,
        normalize=config.normalize,
        crop=config.crop,
        crop_margin=config.crop_margin,
        crop_segmenter=segmenter,
        mask_dilation=config.mask_dilation,
    )


def save_checkpoint(
    path: str | Path, model: nn.Module, config: ExperimentConfig, threshold: float, extra: dict[str, Any] | None = None
) -> Path:
    state = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config.to_dict(),
        "classes": list(CLASSES),
        "in_channels": config.in_channels,
        "preprocessing": preprocessing_for(config).to_dict(),
        "threshold": float(threshold),
        "extra": extra or {},
    }
    if isinstance(model, Ensemble):  # how to rebuild it: the member count and the fitted temperature
        state["ensemble"] = {
            "members": len(members(model)),
            "temperature": float(model.temperature),
            "combine": model.combine,
        }
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


MAX_CHECKPOINT_BYTES = 4 * 2**30  # 16 ResNet50s are 1.5 GB; a bigger file is not one of ours
MAX_ENSEMBLE_MEMBERS = 16  # members are built before their weights are checked: a crafted count must not allocate
_PREPROCESSING_FIELDS = (
    "image_size",
    "in_channels",
    "normalize",
    "crop",
    "crop_margin",
    "crop_segmenter",
    "mask_dilation",
)


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint path as a user gives it: a checkpoint file, or a run folder (its checkpoint.pt).

    Raises:
        CheckpointError: no such file, a folder without checkpoint.pt, or not a regular file.
    """
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoint.pt"
        if inside.is_file():
            return inside
        raise CheckpointError(
            f"{path}: a folder without checkpoint.pt (give a checkpoint file, or a run folder that holds one)"
        )
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file (a FIFO or device cannot be a checkpoint)")
    return path


def _field_error(path: Path, name: str, value: Any, want: str) -> CheckpointError:
    shown = repr(value)
    return CheckpointError(
        f"{path}: malformed checkpoint field {name}={shown[:60]}{'...' if len(shown) > 60 else ''} ({want})"
    )


def validate_state(path: Path, state: dict[str, Any]) -> None:
    """Check every field a Predictor is built from, by type and range, before anything is allocated.

    Raises:
        CheckpointError: naming the file, the field and what it must be.
    """
    import math

    from ..core.config import ConfigError

    sd = state.get("state_dict")
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise _field_error(
            path, "state_dict", type(sd).__name__ if sd is not None else None, "a mapping of parameter names to tensors"
        )
    if not isinstance(state.get("config"), dict):
        raise _field_error(path, "config", state.get("config"), "a mapping")
    try:
        ExperimentConfig.from_dict(state["config"])
    except (ConfigError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: malformed checkpoint config ({e})") from None
    pre = state.get("preprocessing")
    if not isinstance(pre, dict):
        raise _field_error(path, "preprocessing", pre, "a mapping")
    extra = sorted(set(pre) - set(_PREPROCESSING_FIELDS))
    if extra:
        raise _field_error(
            path,
            "preprocessing",
            pre,
            f"unknown key(s) {', '.join(map(str, extra))}; known: {', '.join(_PREPROCESSING_FIELDS)}",
        )
    try:
        Preprocessing(**pre)
    except (ConfigError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: malformed checkpoint preprocessing ({e})") from None
    t = state.get("threshold")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.0 <= t <= 1.0:
        raise _field_error(path, "threshold", t, "a finite number in [0, 1]")
    if not isinstance(state.get("extra", {}), dict):
        raise _field_error(path, "extra", state.get("extra"), "a mapping")
    problem = ood_problem(state.get("extra", {}).get("ood"), sd)
    if problem:
        raise CheckpointError(f"{path}: malformed checkpoint field extra.ood ({problem})")
    ens = state.get("ensemble")
    if ens is not None:
        if not isinstance(ens, dict):
            raise _field_error(path, "ensemble", ens, "a mapping with members and temperature")
        n, temp = ens.get("members"), ens.get("temperature", 1.0)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ENSEMBLE_MEMBERS:
            raise _field_error(path, "ensemble.members", n, f"an integer from 1 to {MAX_ENSEMBLE_MEMBERS}")
        stored = {k.split(".")[1] for k in sd if k.startswith("members.") and k.count(".") >= 2}
        if stored != {str(i) for i in range(n)}:
            raise _field_error(path, "ensemble.members", n, f"the weights hold {len(stored)} member(s)")
        if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not math.isfinite(temp) or temp <= 0:
            raise _field_error(path, "ensemble.temperature", temp, "a finite number > 0")
        if ens.get("combine", "prob") not in COMBINE:
            raise _field_error(path, "ensemble.combine", ens.get("combine"), f"one of {', '.join(COMBINE)}")


def ood_problem(ref: Any, state_dict: dict[str, torch.Tensor]) -> str | None:
    """Why a checkpoint's out-of-distribution reference (extra['ood']) is not one pneumolib wrote, or None: a
    mean of the network's penultimate width, a square precision, a finite threshold > 0 (a NaN threshold would
    never flag a film), and a well-formed whole-film population reference when it carries one."""
    import math

    if ref is None or ref == {}:
        return None
    if not isinstance(ref, dict):
        return f"a {type(ref).__name__}, not a mapping"
    fc = next((v for k, v in state_dict.items() if k.endswith("fc.weight")), None)
    width = int(fc.shape[1]) if isinstance(fc, torch.Tensor) and fc.ndim == 2 else None
    mean, prec, t = ref.get("mean"), ref.get("precision"), ref.get("threshold")
    if not isinstance(mean, torch.Tensor) or mean.ndim != 1 or (width is not None and mean.shape[0] != width):
        return f"mean must be a tensor of the {width or 'penultimate'} features"
    if not isinstance(prec, torch.Tensor) or tuple(prec.shape) != (mean.shape[0], mean.shape[0]):
        return f"precision must be a {mean.shape[0]} x {mean.shape[0]} tensor"
    if not (torch.isfinite(mean.float()).all() and torch.isfinite(prec.float()).all()):
        return "mean or precision is not finite"
    no_val = t == math.inf and ref.get("n_val") == 0  # fitted without validation films: it never flags, as recorded
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) or no_val) or not t > 0:
        return f"threshold {t!r} must be a finite number > 0"
    if ref.get("population") is not None:
        problem = PopulationReference.state_problem(ref["population"])
        if problem:
            return f"population: {problem}"
    return None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's dict with weights_only=True, refusing anything that is not ours.

    Args:
        path: a checkpoint file, or a run folder holding checkpoint.pt.

    Returns:
        The checkpoint's dict, every field checked (validate_state).

    Raises:
        CheckpointError: one line naming the file and the problem.
    """
    path = checkpoint_file(path)
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path}: {size / 2**30:.1f} GB, over the {MAX_CHECKPOINT_BYTES // 2**30} GB limit for a "
            "pneumolib checkpoint"
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        kind = (
            "an empty file"
            if not head
            else ("a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "another kind of file")
        )
        raise CheckpointError(
            f"{path}: not a torch checkpoint ({kind}; a pneumolib checkpoint is the zip archive torch.save writes)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[-1] if lines else "")
        if "GLOBAL" not in str(e):  # not a code-carrying pickle, just not a checkpoint
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({detail[:160]})") from None
        raise CheckpointError(
            f"{path}: refused, it holds pickled objects that are not plain tensors and data "
            f"(loaded with weights_only=True: {detail[:160]})"
        ) from None
    except Exception as e:  # noqa: BLE001  torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {str(e)[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pneumolib checkpoint (no format {FORMAT!r})")
    if list(state.get("classes", [])) != list(CLASSES):
        raise CheckpointError(f"{path}: classes {state.get('classes')} differ from pneumolib's {list(CLASSES)}")
    validate_state(path, state)
    fields = {
        "in_channels": state.get("in_channels"),
        "preprocessing.in_channels": state.get("preprocessing", {}).get("in_channels"),
        "config.in_channels": state.get("config", {}).get("in_channels"),
    }
    if len(set(fields.values())) != 1:
        raise CheckpointError(
            f"{path}: inconsistent channel count ({', '.join(f'{k}={v}' for k, v in fields.items())})"
        )
    return state


@dataclass(frozen=True)
class Prediction:
    """What the package says about one film: the served prediction record (`Predictor.predict_records`).

    Attributes:
        path: the file.
        label: "PNEUMONIA" or "NORMAL", by the checkpoint's threshold.
        p_pneumonia: P(PNEUMONIA), test-time augmentation included when the checkpoint uses it.
        threshold: the checkpoint's decision threshold.
        ood_distance: the film's out-of-distribution distance (None: the checkpoint carries no reference).
        unlike_training: True when that distance, or the whole-film population score, is beyond its threshold
            (do not trust the answer).
        lungs: "" without a lung crop; "cropped"; or "NOT FOUND: why" (the whole film was used).
        population_score: the whole film's distance from the training films through the lung segmenter's encoder
            (data.population; 1.0 is a typical validation film; None: the checkpoint carries no such reference).
        orientation: the file's EXIF orientation (1: stored upright); any other was applied before the film was
            read, as every viewer shows it.
        adapted: the label and P(PNEUMONIA) come from the model adapted to the folder's site (api.predict_folder);
            the distance and the flags always come from the model as trained.
    """

    path: str
    label: str
    p_pneumonia: float
    threshold: float
    ood_distance: float | None = None
    unlike_training: bool | None = None
    lungs: str = ""
    population_score: float | None = None
    orientation: int = 1
    adapted: bool = False  # answered by the model adapted to this folder's site (api.predict_folder)

    @property
    def oriented(self) -> str:
        """'' for a film stored upright; else the EXIF orientation that was applied before reading it."""
        return "" if self.orientation == 1 else f"EXIF orientation {self.orientation} applied"

    def line(self) -> str:
        """The tab-separated line `predict` prints."""
        notes = [f"lungs={self.lungs}"] if self.lungs else []
        if self.adapted:
            notes.append("adapted=site")
        if self.orientation != 1:
            notes.append(f"exif_orientation={self.orientation} (applied)")
        if self.population_score is not None:
            notes.append(f"population={self.population_score:.2f}")
        if self.ood_distance is not None:
            notes.append(
                f"ood={self.ood_distance:.1f}"
                + (" UNLIKE THE TRAINING FILMS: do not trust this answer" if self.unlike_training else "")
            )
        return (
            f"{self.path}\t{self.label}\tp_pneumonia={self.p_pneumonia:.4f}\tthreshold={self.threshold:.3f}"
            + "".join(f"\t{n}" for n in notes)
        )


class Predictor:
    """A trained model with the preprocessing and decision threshold it was saved with."""

    def __init__(
        self,
        model: nn.Module,
        config: ExperimentConfig,
        threshold: float,
        preprocessing: Preprocessing | None = None,
        device: str | torch.device = "cpu",
        cache: DecodedCache | None = None,
        resources: Resources | None = None,
    ):
        self.model = model.to(device).eval()
        self.config = config
        self.threshold = float(threshold)
        self.preprocessing = preprocessing or preprocessing_for(config)
        self.device = torch.device(device)
        self.extra: dict[str, Any] = {}
        given = resources if resources is not None else cache  # `cache=`: callers written before the context existed
        self._resources: Resources | None = None if given is None else as_resources(given, self.device)

    @classmethod
    def sharing(cls, predictor: "Predictor", resources: Resources | DecodedCache) -> "Predictor":
        """PREDICTOR (its model, config, threshold, preprocessing and extra) serving from RESOURCES (a context, or
        a bare decode cache): the one way a predictor and the data it is evaluated on share their decoded films and
        their lung segmenter."""
        out = cls(
            predictor.model,
            predictor.config,
            predictor.threshold,
            predictor.preprocessing,
            predictor.device,
            resources=as_resources(resources, predictor.device),
        )
        out.extra = predictor.extra
        return out

    @property
    def resources(self) -> Resources:
        """This predictor's context (decode cache, lung segmenter, device): the one it was made with
        (Predictor.sharing), else its own, made on first use (there is no process-wide one)."""
        if self._resources is None:
            self._resources = Resources(DecodedCache.from_environment(), self.device)
        return self._resources

    @property
    def cache(self) -> DecodedCache:
        """The decoded films this predictor has seen: its context's cache."""
        return self.resources.cache

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        state = read_checkpoint(path)
        config = ExperimentConfig.from_dict(state["config"])
        pre = Preprocessing(**state["preprocessing"])
        model = build_model(config.model, in_channels=pre.in_channels, pretrained=False)
        ens = state.get("ensemble")
        if ens:  # a seed ensemble and/or a temperature-scaled model, served as one network (validate_state: 1-16)
            n = int(ens["members"])
            model = Ensemble(
                [build_model(config.model, in_channels=pre.in_channels, pretrained=False) for _ in range(n)],
                float(ens.get("temperature", 1.0)),
                ens.get("combine", "prob"),  # checkpoints before the recipe's ensemble averaged probabilities
            )
        try:
            model.load_state_dict(state["state_dict"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{path}: weights do not fit {config.model} with {pre.in_channels} input "
                f"channel(s) ({str(e).splitlines()[0][:160]})"
            ) from None
        predictor = cls(model, config, state["threshold"], pre, device)
        predictor.extra = dict(state.get("extra", {}))  # training history, timing, weights used
        return predictor

    @property
    def in_channels(self) -> int:
        return self.preprocessing.in_channels

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse what the model was not trained on: other than N x C x S x S at its channels and view size."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"predict_proba takes a tensor of preprocessed inputs, not a {type(x).__name__}; "
                "build them with predictor.preprocess(path)"
            )
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ChannelMismatch(
                f"this checkpoint expects {self.in_channels}-channel input (N x {self.in_channels} x H x W), "
                f"got shape {tuple(x.shape)}; build inputs with predictor.preprocess() instead"
            )
        size = self.preprocessing.image_size
        if tuple(x.shape[2:]) != (size, size):
            raise ValueError(
                f"this checkpoint expects {size} x {size} inputs, got {x.shape[2]} x {x.shape[3]}; "
                "build inputs with predictor.preprocess() instead"
            )

    def context(self, given: Resources | DecodedCache | None = None) -> Resources:
        """The context a call works in: this predictor's (Predictor.resources), or GIVEN (a context, or a bare
        decode cache from callers written before the context existed) on this predictor's device. The public
        methods below still take such a `cache` argument; everything inside the package passes `resources`."""
        return self.resources if given is None else as_resources(given, self.device)

    def preprocess(self, path: str | Path, cache: Resources | DecodedCache | None = None) -> torch.Tensor:
        """A file -> the exact model input used at training time (lung crop included); decoded through this
        predictor's context, or CACHE's (Predictor.context)."""
        img = torch.from_numpy(self.context(cache).cache.get(path, self.preprocessing.view)).unsqueeze(0)
        return self.preprocessing(img)

    def input_note(self, path: str | Path, cache: Resources | DecodedCache | None = None) -> str:
        """'' for a model without a lung crop; else whether the film's lungs were found and cropped, or why the
        whole film was used (a film the crop could not handle is flagged in every output, never hidden). CACHE: as
        in preprocess."""
        box = self.context(cache).cache.box(path, self.preprocessing.view)
        return "" if box is None else (f"lungs=NOT FOUND: {box.problem}" if box.problem else "lungs=cropped")

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        """P(PNEUMONIA) for a batch of preprocessed inputs (N x C x H x W)."""
        self.check_input(x)
        return predict_proba(self.model, x, device=self.device, tta=self.config.tta)

    def predict_records(
        self, paths: list[str | Path], cache: Resources | DecodedCache | None = None
    ) -> tuple[list["Prediction"], list[ImageError]]:
        """The whole served record for every readable file (label, P(PNEUMONIA), the out-of-distribution distance
        and flag, the lung-crop note), each film through the network once (models.inference.view_outputs reads the
        penultimate features in the same pass); and the files that could not be read, each with its reason (never
        raised: one bad film must not cost the others their predictions). CACHE: as in preprocess."""
        resources = self.context(cache)
        if isinstance(paths, (str, os.PathLike)):  # one film given by name, not a list of its characters
            paths = [paths]
        paths = [Path(p) for p in paths]
        refused = resources.cache.warm(paths, self.preprocessing.view)
        bad = {e.path for e in refused}
        good = [p for p in paths if p not in bad]
        samples = [unlabelled(p) for p in good]
        ref = (self.extra or {}).get("ood")
        logits, feats = view_outputs(
            self.model,
            samples,
            self.preprocessing,
            device=self.device,
            tta=self.config.tta,
            resources=resources,
            features=bool(ref),
        )
        probs = probabilities(logits, combine=combine_of(self.model))
        far = flag(ref, None if feats is None else feats.numpy())  # models.ood_score: as evaluate scores
        whole = population_flag(ref, good) if good else None
        out = [
            Prediction(
                str(p),
                CLASSES[int(v >= self.threshold)],
                float(v),
                self.threshold,
                None if far is None else float(far[0][i]),
                None if far is None else bool(far[1][i] or (whole is not None and whole[1][i])),
                self.input_note(p, resources).removeprefix("lungs="),
                None if whole is None else float(whole[0][i]),
                exif_orientation(p),
            )
            for i, (p, v) in enumerate(zip(good, probs))
        ]
        return out, refused
