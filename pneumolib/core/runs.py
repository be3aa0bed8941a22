"""The run-folder layout, in one place: what a finished (or interrupted) run leaves in RUN_DIR."""

from __future__ import annotations

import contextlib
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core.io import OutputError, RecordError, load_record, read_record

CHECKPOINT = "checkpoint.pt"  # weights + config + preprocessing + threshold
STATE = "last.pt"  # training state after the last completed epoch (for --resume); removed when training ends
LAST_EPOCH = "last_epoch.pt"  # the last epoch's weights, kept when an earlier epoch was kept: its test metrics too
METRICS = "metrics.json"  # everything run_experiment measured
CONFIG = "config.json"  # the frozen config the run trained
SCORES_TEST = "scores_test.csv"  # per-image P(PNEUMONIA) on the test split
SCORES_VAL = "scores_val.csv"
STRESS = "stress.json"  # the stress test's rows, cached per checkpoint
INFERENCE_PATHS = "inference_paths.json"  # notebook 04's inference paths of this checkpoint (drift.inference_paths)
EXPLANATION = "explanation.npz"  # run_experiment's Grad-CAM results (arrays + JSON, no pickle), cached per checkpoint, data and settings
EVALUATIONS = "evaluations"  # one JSON per cohort 'evaluate' scored with this checkpoint
CARD = "MODEL_CARD.md"
GRADCAM = "gradcam"  # explain's figures and JSON, by default
# folders under a RUNS root (the notebooks' and 'run --seeds'/'ablate' layout)
ABLATION = "ablation"  # RUNS/ablation/<step>/seed{S}: the ablation steps on the folders' split
EARLY_IDS = "early_ids"  # RUNS/early_ids/<step>/seed{S}: the same steps under the early-ID holdout
MATCHED_BASELINE = (
    "baseline_at_recommended_budget"  # RUNS/ablation/<this>/seed{S}: the log's baseline at the recipe's budget
)


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder: `RunDir(path).checkpoint`, `.metrics`, ..."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def last_epoch(self) -> Path:
        return self.path / LAST_EPOCH

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def scores_test(self) -> Path:
        return self.scores("test")

    @property
    def scores_val(self) -> Path:
        return self.scores("val")

    def scores(self, split: str) -> Path:
        """The per-film score file of one split (core.scores.read_scores reads it)."""
        return self.path / f"scores_{split}.csv"

    @property
    def stress(self) -> Path:
        """The stress test of the test split (the final report's)."""
        return self.path / STRESS

    def stress_for(self, split: str) -> Path:
        """The stress test of one split: stress.json for test, stress_<split>.json for another (val: selection)."""
        return self.stress if split == "test" else self.path / f"stress_{split}.json"

    @property
    def inference_paths(self) -> Path:
        return self.path / INFERENCE_PATHS

    @property
    def explanation(self) -> Path:
        return self.path / EXPLANATION

    @property
    def evaluations(self) -> Path:
        return self.path / EVALUATIONS

    @property
    def card(self) -> Path:
        return self.path / CARD

    @property
    def gradcam(self) -> Path:
        return self.path / GRADCAM

    def is_finished(self) -> bool:
        return self.checkpoint.is_file() and self.metrics.is_file()


# what a training leaves in its run folder, besides its own checkpoint: records of THAT model, which a new training in
# the same folder must not inherit (its card would list the old model's evaluations as its own)
TRAINING_RECORDS = (
    METRICS,
    CONFIG,
    SCORES_TEST,
    SCORES_VAL,
    LAST_EPOCH,
    "explanation.pkl",
    EXPLANATION,
    CARD,
    INFERENCE_PATHS,
)
TRAINING_RECORD_GLOBS = ("stress*.json", "shortcuts_*.json")
TRAINING_RECORD_FOLDERS = (EVALUATIONS, GRADCAM)


LOCK = ".lock"  # held (fcntl) by the one process writing a training into the folder
MEMBERS = "members"  # a seed ensemble's member runs, one run folder each (seedN), reused by their own keys


def _is_temp(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or name.startswith(".pneumolib-write-check."))


def own_names() -> tuple[str, ...]:
    """Every file and folder name (or glob) pneumolib writes in a run folder."""
    return (
        CHECKPOINT,
        STATE,
        *TRAINING_RECORDS,
        *TRAINING_RECORD_GLOBS,
        *TRAINING_RECORD_FOLDERS,
        LOCK,
        "scores_*.csv",
        MEMBERS,
    )


def _written_by_us(path: Path) -> bool:
    """Whether a file with one of pneumolib's names holds what pneumolib writes there (a user's own config.json or
    MODEL_CARD.md in the folder is not ours, whatever its name)."""
    name = path.name
    if path.is_symlink():
        return False
    if path.is_dir():
        return name in TRAINING_RECORD_FOLDERS or name == MEMBERS
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if name.endswith(".pt"):
        return head.startswith(b"PK")  # torch's zip archive; read_checkpoint judges the rest
    if name == CARD:
        return head.startswith(b"---\nlicense:")
    if name.endswith(".csv"):
        return head.startswith(b"path,")
    if name.endswith(".npz"):
        return head.startswith(b"PK")
    if name.endswith(".json"):
        try:
            rec = read_record(path, typed=name == METRICS)
        except (RecordError, OSError):
            return False
        if name == CONFIG:
            from ..core.config import ExperimentConfig

            try:
                ExperimentConfig.from_dict(rec)
            except (ValueError, TypeError, KeyError):
                return False
        return True
    return name == LOCK


def foreign_files(run_dir: str | Path) -> tuple[list[str], list[str]]:
    """(files pneumolib did not write whose names it writes: a training would overwrite them; other files it did
    not write), in RUN_DIR. Temp files of an interrupted write count as pneumolib's."""
    path = Path(run_dir)
    if not path.is_dir():
        return [], []
    colliding, other = [], []
    for f in sorted(path.iterdir()):
        if _is_temp(f.name):
            continue
        if any(fnmatch.fnmatch(f.name, g) for g in own_names()):
            if not _written_by_us(f):
                colliding.append(f.name)
        else:
            other.append(f.name)
    return colliding, other


def record_files(run_dir: str | Path) -> list[Path]:
    """The records pneumolib keeps in RUN_DIR (its checkpoint and every record of the model), as they exist now:
    the inputs a command reading this run must never write over."""
    path = Path(run_dir)
    if not path.is_dir():
        return []
    out = [
        f
        for f in path.iterdir()
        if not _is_temp(f.name)
        and f.name != LOCK
        and any(fnmatch.fnmatch(f.name, g) for g in own_names())
        and not f.is_dir()
    ]
    ev = path / EVALUATIONS
    if ev.is_dir() and not ev.is_symlink():
        out += sorted(ev.glob("*.json"))
    return sorted(out)


_HELD_LOCKS: set[int] = set()  # this process's lock descriptors: a forked child drops its copies at once


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader worker), close the copies of the parent's lock descriptors. A flock belongs
    to the open file, which fork shares, so without this a worker outliving a killed trainer keeps the folder
    locked (regression: CI's resume after SIGKILL was refused while orphaned workers were still exiting)."""
    for fd in tuple(_HELD_LOCKS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


@contextlib.contextmanager
def writer_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock exclusively while a training writes the folder: a second writer is refused at once with
    one line (OutputError); readers never take it and are never blocked. The lock dies with the process."""
    import fcntl

    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        raise OutputError(f"{path}: cannot take the run folder's lock ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            except OSError:
                pid = "?"
            raise OutputError(
                f"{run_dir}: another pneumolib process (pid {pid}) is writing a training into this run "
                "folder; wait for it to finish, or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD_LOCKS.add(fd)
        yield
    finally:
        _HELD_LOCKS.discard(fd)
        os.close(fd)  # releases the lock


def clear_training(run_dir: str | Path) -> list[str]:
    """Remove a run folder's checkpoint and every record of the model it held (metrics, scores, stress tests,
    shortcut audits, Grad-CAM results, evaluations of other cohorts, the model card), so that a new training there
    starts clean. Returns the names removed. Files this package did not write are left alone, whatever their
    names (foreign_files), and a symbolic link is never followed."""
    import shutil

    path = Path(run_dir)
    if not path.is_dir():
        return []
    gone = []
    for name in (CHECKPOINT, STATE, *TRAINING_RECORDS):
        f = path / name
        if f.is_file() and _written_by_us(f):
            f.unlink()
            gone.append(name)
    for pattern in TRAINING_RECORD_GLOBS:
        for f in sorted(path.glob(pattern)):
            if f.is_file() and _written_by_us(f):
                f.unlink()
                gone.append(f.name)
    for name in TRAINING_RECORD_FOLDERS:
        d = path / name
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
            gone.append(name + "/")
    return gone


def run_dir_name(entry: str, name: str) -> str:
    """'01_baseline': the folder name 'run' and the notebooks use for a registered experiment."""
    return f"{entry}_{name}" if entry else name


def entry_dir(runs: str | Path, config) -> Path:
    """RUNS/NN_name: an experiment's folder, holding one seed{S} run folder per seed."""
    return Path(runs) / run_dir_name(config.entry, config.name)


def seed_dir(runs: str | Path, config, seed: int) -> Path:
    """RUNS/NN_name/seed{S}: one seed's run folder (the notebooks, 'run --seeds', the ablation's registered steps)."""
    return entry_dir(runs, config) / f"seed{int(seed)}"


def seed_dirs(runs: str | Path, seed: int) -> list[Path]:
    """Every registered experiment's and ablation step's run folder for this seed under RUNS, and the member of this
    seed in a seed ensemble of this seed (for finding a twin run to reuse: notebook 10's recipe, or its ensemble's
    first member, is its ablation's last step when the budgets agree). Members of this seed in other ensembles are
    not searched here (studies.run_config.sibling_member adopts them between ensembles); adoption checks the data
    fingerprint either way."""
    s = int(seed)
    return (
        sorted(Path(runs).glob(f"[0-9][0-9]_*/seed{s}"))
        + sorted(Path(runs).glob(f"[0-9][0-9]_*/seed{s}/members/seed{s}"))
        + sorted(Path(runs).glob(f"{ABLATION}/*/seed{s}"))
    )


def ablation_dir(runs: str | Path, config, holdout: str = "folders") -> Path:
    """Where an ablation step's run for the config's seed lives: RUNS/early_ids/<step>/seed{S} under the early-ID
    holdout; the registered experiments (baseline, recommended) share the notebooks' seed folders; the other steps
    RUNS/ablation/<step>/seed{S}."""
    if holdout == "early_ids":
        return Path(runs) / EARLY_IDS / config.name / f"seed{int(config.seed)}"
    if config.entry:
        return seed_dir(runs, config, config.seed)
    return Path(runs) / ABLATION / config.name / f"seed{int(config.seed)}"


def matched_baseline_dir(runs: str | Path, seed: int = 0) -> Path:
    return Path(runs) / ABLATION / MATCHED_BASELINE / f"seed{int(seed)}"


def checkpoint_key(ckpt: str | Path) -> str:
    """A cheap identity of a checkpoint file (size and modification time; shutil.copy2 keeps both), for the caches
    a run folder keeps of results computed from it."""
    st = Path(ckpt).stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's metrics.json, with the stress test's summary under 'stress' when stress.json exists, and
    notebook 04's inference paths under 'inference_paths' when they were measured on this very checkpoint (so the
    summary notebook reads what notebook 04 showed), and the folder itself under 'run_dir'."""
    run = RunDir(run_dir)
    if not run.metrics.is_file():
        raise FileNotFoundError(f"{run.metrics}: no {METRICS} (is {run.path} a finished run folder?)")
    m = read_record(run.metrics)
    stress = load_record(run.stress)  # written by 'python -m pneumolib stress RUN_DIR'
    if stress is not None:
        m["stress"] = stress.get("summary")
    paths = load_record(run.inference_paths)
    if (
        paths is not None
        and run.checkpoint.is_file()
        and paths.get("checkpoint_key") == checkpoint_key(run.checkpoint)
        and isinstance(paths.get("paths"), dict)
    ):
        m["inference_paths"] = paths["paths"]
    m["run_dir"] = str(run.path.resolve())  # where its per-film scores are (the verdicts read them); never written
    return m
