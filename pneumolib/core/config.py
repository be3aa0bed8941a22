"""The experiment config type: its fields and allowed names, model views and run profiles (studies.catalogue holds the experiments)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

CLASSES = ("NORMAL", "PNEUMONIA")  # fixed indices: NORMAL=0, PNEUMONIA=1

# --- the names each string field may take ---------------------------------------------------
# The implementations live in higher layers as dict registries keyed by these names (train.LOSSES, train.OPTIMIZERS,
# ..., transforms.TRANSFORMS); tests check that each registry's keys equal the names here, so a config is checked
# when it is built (by replace(...) too), not when training reaches the field.
MODELS = ("resnet18", "resnet34", "resnet50")
LOSSES = ("ce", "focal")
CLASS_WEIGHTINGS = ("none", "balanced")
SAMPLERS = ("shuffle", "balanced")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine")
NORMALIZATIONS = ("none", "imagenet", "per_image", "equalize", "equalize_masked")
TRANSFORM_NAMES = ("none", "log_baseline", "log_strong_normal", "central_focus", "robust", "sharpness")
THRESHOLD_RULES = ("fixed:T", "youden", "youden_shifted", "balanced", "sensitivity:S")
PROFILE_NAMES = ("smoke", "fixture", "cpu", "gpu", "full")
CROPS = ("none", "lungs", "lung_mask")

# --- the names a command line may pass, owned here (torch-free) so argparse's choices and the code agree ---------
SPLITS = ("train", "val", "test")  # a data set's splits (data.samples, the lung masks' folders)
HOLDOUTS = ("folders", "early_ids")  # data.splits.apply_holdout: the folders' test split, or the early-ID holdout
ADAPT_MODES = ("bn", "prior", "both")  # analysis.adapt.adapt: AdaBN, the prior-shift threshold, or both
SITE_MODES = ("site", "none")  # analysis.site: adapted to a folder when the label-free checks pass, or never


MAX_IMAGE_SIZE = 1024  # the model input's side: larger is a mistake (and 20,000 px would exhaust memory)
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4096
MAX_MEMBERS = 16  # the checkpoint's limit on an ensemble's networks


class ConfigError(ValueError):
    """A config value that is not allowed; str() is one line naming the field and what it may be."""


def check_int(field_name: str, value: Any, lo: int, hi: int) -> None:
    """Refuse anything but an integer (not a bool, not a float) in [lo, hi].

    Raises:
        ConfigError: naming the field, the value and the range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"config field {field_name}={value!r} must be an integer from {lo:,} to {hi:,}")


def _choice(field_name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"config field {field_name}={value!r} is not one of: {', '.join(map(str, allowed))}")


def parse_threshold_rule(rule: str) -> tuple[str, float | None]:
    """'fixed:0.8' -> ('fixed', 0.8); 'youden' -> ('youden', None) (also 'youden_shifted');
    'sensitivity:0.95' -> ('sensitivity', 0.95).
    Raises ValueError naming the rule and the forms allowed."""
    kind, sep, arg = str(rule).partition(":")
    bad = ConfigError(
        f"config field threshold={rule!r} is not one of: {', '.join(THRESHOLD_RULES)} (T in [0, 1], S in (0, 1])"
    )
    if kind in ("youden", "youden_shifted", "balanced") and not sep:
        return kind, None
    if kind in ("fixed", "sensitivity") and sep:
        try:
            x = float(arg)
        except ValueError:
            raise bad from None
        if (kind == "fixed" and 0 <= x <= 1) or (kind == "sensitivity" and 0 < x <= 1):
            return kind, x
    raise bad


# crop "lung_mask": how far the segmenter's lung mask is grown before the pixels outside it are set to black, as a
# share of the film's width; chosen on the validation films' annotated masks ('python -m pneumolib lungs coverage',
# docs/lungs.md), so that dense consolidations at the bases, which the segmenter can miss, stay in the picture
DEFAULT_MASK_DILATION = 0.08


@dataclass(frozen=True)
class View:
    """How a file becomes the model's uint8 square image: optionally cropped to its lung fields on the full film (the
    lung segmenter's box plus `margin` of its height and width on each side), then squashed to size x size."""

    size: int
    crop: str = "none"  # "none" | "lungs" | "lung_mask" (the box, and black outside the dilated lung mask)
    margin: float = 0.08
    segmenter: str = ""  # digest of the lung segmenter that draws the box ("" = whichever the cache holds)
    dilation: float = DEFAULT_MASK_DILATION  # crop "lung_mask": the mask grown by this share of the film's width

    def __post_init__(self) -> None:
        check_int("image_size", self.size, 1, MAX_IMAGE_SIZE)
        _choice("crop", self.crop, CROPS)
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not 0 <= self.margin <= 0.5:
            raise ConfigError(f"config field crop_margin={self.margin!r} must be in [0, 0.5]")
        if (
            isinstance(self.dilation, bool)
            or not isinstance(self.dilation, (int, float))
            or not 0 <= self.dilation <= 0.25
        ):
            raise ConfigError(f"config field mask_dilation={self.dilation!r} must be in [0, 0.25]")

    @property
    def tag(self) -> str:
        """The disk cache's folder for this view: the size alone without a crop (as before crops existed)."""
        if self.crop == "none":
            return str(self.size)
        extra = f"d{self.dilation:g}" if self.crop == "lung_mask" else ""
        return f"{self.size}-{self.crop}{self.margin:g}{extra}-{self.segmenter}"


def as_view(view: "int | View") -> View:
    """An image size (the whole film squashed) or a View."""
    return view if isinstance(view, View) else View(int(view))


# Fields added after run folders existed: left out of training_key at their default, so those runs stay reusable.
KEYED_UNLESS_DEFAULT = {"sync_bn": True, "mask_dilation": DEFAULT_MASK_DILATION, "members": 1}

# Fields that only change how a trained model is evaluated; they do not change its weights.
EVAL_ONLY_FIELDS = ("name", "entry", "date", "title", "log_said", "threshold", "eval_subset_per_class")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment; saved with every checkpoint and result."""

    name: str = "baseline"
    entry: str = "01"
    date: str = "2024-05-13"
    title: str = "Baseline ResNet18, augmentation only"
    log_said: str = ""
    # model
    model: str = "resnet18"
    in_channels: int = 1
    pretrained: bool = False
    init_from: str | None = None  # a pneumolib checkpoint to fine-tune from (train --init-from)
    # preprocessing (travels with the weights)
    image_size: int = 224
    normalize: str = "none"  # "none" (the log's bare ToTensor) | "imagenet" | "per_image" | "equalize"
    crop: str = "none"  # "none" (the whole film) | "lungs" (the lung segmenter's box, on the full-size film)
    crop_margin: float = 0.08  # with crop "lungs": margin added on each side, as a share of the box's size
    mask_dilation: float = DEFAULT_MASK_DILATION  # with crop "lung_mask": how far the lung mask is grown (View)
    # training-time transforms per class, as "+"-joined names from pneumolib.data.transforms
    train_transforms: tuple[tuple[str, str], ...] = (
        ("NORMAL", "log_baseline"),
        ("PNEUMONIA", "log_baseline"),
    )
    # optimisation
    loss: str = "ce"  # "ce" | "focal"
    focal_gamma: float = 2.0
    focal_alpha: float | None = None  # weight of PNEUMONIA; NORMAL gets 1 - alpha
    class_weighting: str = "none"  # "none" | "balanced"
    sampler: str = "shuffle"  # "shuffle" | "balanced"
    optimizer: str = "adam"  # "adam" | "adamw" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"  # "none" | "cosine"
    label_smoothing: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    max_train_images: int | None = None  # per epoch, a seeded class-stratified subsample
    seed: int = 0
    # decision rule: "fixed:0.5" | "youden" (on validation) | "sensitivity:0.95" (on validation)
    threshold: str = "fixed:0.5"
    tta: bool = False  # average probabilities over the image and its horizontal flip
    # a seed ensemble: this many networks (seeds seed, seed+1, ...), trained one after another on the same split,
    # served as one checkpoint (logits averaged, temperature fitted on validation)
    members: int = 1
    eval_subset_per_class: int | None = None  # entry 8's 5 + 5 image report
    profile: str = "full"
    # several processes (torchrun): BatchNorm statistics over the global batch (SyncBatchNorm); no effect in one
    sync_bn: bool = True

    def __post_init__(self) -> None:
        """Refuse a bad value at construction (and so at every replace(...)), naming the field and what is allowed."""
        _choice("model", self.model, MODELS)
        _choice("in_channels", self.in_channels, (1, 3))
        _choice("normalize", self.normalize, NORMALIZATIONS)
        View(self.image_size, self.crop, self.crop_margin, "", self.mask_dilation)  # checks crop, margin, dilation
        _choice("loss", self.loss, LOSSES)
        _choice("class_weighting", self.class_weighting, CLASS_WEIGHTINGS)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("profile", self.profile, PROFILE_NAMES)
        parse_threshold_rule(self.threshold)
        classes = [c for c, _ in self.train_transforms]
        if sorted(classes) != sorted(CLASSES) or len(classes) != len(CLASSES):
            raise ConfigError(
                f"config field train_transforms={self.train_transforms!r} must name each of "
                f"{', '.join(CLASSES)} exactly once"
            )
        for cls, spec in self.train_transforms:
            parts = [p.strip() for p in str(spec).split("+")]
            for part in parts:
                if part not in TRANSFORM_NAMES:
                    raise ConfigError(
                        f"config field train_transforms: {cls} transform {spec!r} has {part!r}, "
                        f"which is not one of: {', '.join(TRANSFORM_NAMES)}"
                    )
        check_int("image_size", self.image_size, 32, MAX_IMAGE_SIZE)  # ResNet downsamples 32x
        check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_int("members", self.members, 1, MAX_MEMBERS)
        check_int("seed", self.seed, 0, 2**32 - 1)
        for name in ("lr", "weight_decay", "focal_gamma", "label_smoothing", "crop_margin", "mask_dilation"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
                raise ConfigError(f"config field {name}={v!r} must be a finite number")
        if not self.lr > 0:
            raise ConfigError(f"config field lr={self.lr!r} must be > 0")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"config field label_smoothing={self.label_smoothing!r} must be in [0, 1)")
        if self.weight_decay < 0 or self.focal_gamma < 0:
            raise ConfigError("config fields weight_decay and focal_gamma must be >= 0")
        if self.focal_alpha is not None and not 0 <= self.focal_alpha <= 1:
            raise ConfigError(f"config field focal_alpha={self.focal_alpha!r} must be None or in [0, 1]")
        for name in ("max_train_images", "eval_subset_per_class"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and v > 0):
                raise ConfigError(f"config field {name}={v!r} must be None or a positive integer")

    # --- helpers -------------------------------------------------------------
    @property
    def view(self) -> View:
        """How training decodes its films (the segmenter is the cache's: checkpoints record its digest)."""
        return View(self.image_size, self.crop, self.crop_margin, "", self.mask_dilation)

    def transform_for(self, class_name: str) -> str:
        return dict(self.train_transforms)[class_name]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        d = dict(d)
        if "train_transforms" in d:
            d["train_transforms"] = tuple(tuple(x) for x in d["train_transforms"])
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "ExperimentConfig":
        return cls.from_dict(json.loads(s))

    def training_key(self) -> str:
        """Hash of the fields that change the trained weights (not the name or the decision rule)."""
        d = {
            k: v
            for k, v in self.to_dict().items()
            if k not in EVAL_ONLY_FIELDS and not (k in KEYED_UNLESS_DEFAULT and v == KEYED_UNLESS_DEFAULT[k])
        }
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def diff(old: ExperimentConfig | None, new: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """Fields that differ (descriptive fields left out)."""
    if old is None:
        return {}
    skip = {"name", "entry", "date", "title", "log_said"}
    return {
        f.name: (getattr(old, f.name), getattr(new, f.name))
        for f in dataclasses.fields(new)
        if f.name not in skip and getattr(old, f.name) != getattr(new, f.name)
    }


def format_diff(d: dict[str, tuple[Any, Any]]) -> str:
    if not d:
        return "(the baseline)"
    parts = []
    for k, (a, b) in d.items():
        if k == "train_transforms":
            a, b = dict(a), dict(b)
            for cls in CLASSES:
                if a.get(cls) != b.get(cls):
                    parts.append(f"{cls} transform: {a.get(cls)} -> {b.get(cls)}")
        else:
            parts.append(f"{k}: {a} -> {b}")
    return "; ".join(parts)


# --- run profiles: how big a run this machine can afford ----------------------------
PROFILES: dict[str, dict[str, Any]] = {  # keys: PROFILE_NAMES
    # the notebooks under nbval and in the browser test: every cell runs, on the fixture, with as little training
    # as still exercises it (results are about nothing; the tests in tests/ check that learning works)
    "smoke": dict(image_size=64, epochs=2, batch_size=16),
    # the bundled 64 px fixture: seconds on a laptop CPU
    "fixture": dict(image_size=64, epochs=10, batch_size=16),
    # real data on a 2-core CPU: 128 px, a fresh class-stratified 2,000-image subsample each epoch
    "cpu": dict(image_size=128, epochs=6, batch_size=32, max_train_images=2000),
    # real data on a GPU: the configs as written
    "gpu": dict(),
    "full": dict(),
}


# per-experiment changes on top of a profile: the recommended recipe's CPU profile trains on every image,
# 20 epochs at 128 px (its time: README, "Recommended recipe"), instead of 6 epochs of a 2,000-image sample
# The recipe is a seed ensemble of 3 (issue: a model that does not move with the seed); on the fixture profiles, which
# only exercise the code, it is one network (tests/test_recipe_ensemble.py trains a 2-member one on the fixture)
EXPERIMENT_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "recommended": {
        "cpu": dict(epochs=20, max_train_images=None),
        "smoke": dict(members=1),
        "fixture": dict(members=1),
    },
}


def apply_profile(config: ExperimentConfig, profile: str) -> ExperimentConfig:
    """The config resized to a run profile (and the experiment's own changes for that profile)."""
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    extra = EXPERIMENT_PROFILES.get(config.name, {}).get(profile, {})
    return replace(config, profile=profile, **{**PROFILES[profile], **extra})
