"""What every command shares: one-line argparse errors, typed options, the data source, the output checks."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..core import config as C


class UsageError(ValueError):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit code 2): a bad value is named, no usage block, no traceback."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"{v} is out of range: it must be {'from ' + str(lo) + ' to ' + str(hi) if hi is not None else 'at least ' + str(lo)}"
            )
        return v

    return parse


def float_in(lo: float, hi: float):
    """An argparse type: a finite number in [lo, hi] (NaN and infinity refused)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= v <= hi:  # False for NaN too
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be a number from {lo:g} to {hi:g}")
        return v

    return parse


def user_errors():
    # imported here, so that --help and 'experiments' do not pay for importing torch
    from ..core.io import OutputError, RecordError
    from ..data.dataset import DataError
    from ..data.imaging import ImageError
    from ..models.checkpoint import ChannelMismatch, CheckpointError
    from ..models.networks import WeightsError, WeightsUnavailable
    from ..studies.catalogue import UnknownExperiment

    return (
        UsageError,
        UnknownExperiment,
        C.ConfigError,
        DataError,
        ImageError,
        CheckpointError,
        ChannelMismatch,
        WeightsUnavailable,
        WeightsError,
        OutputError,
        RecordError,
        FileNotFoundError,
    )


def data_source(args, required: bool = False):
    """--data-dir, or --data-csv with --image-root (a CSV manifest), as one data source; None for the default."""
    csv = getattr(args, "data_csv", None)
    if csv:
        if args.data_dir:
            raise UsageError("give --data-dir or --data-csv, not both")
        from ..data.dataset import Manifest

        return Manifest.at(csv, args.image_root)
    if getattr(args, "image_root", None):
        raise UsageError("--image-root goes with --data-csv")
    if required and not args.data_dir:
        raise UsageError("give the data: --data-dir DIR, or --data-csv FILE --image-root DIR")
    return args.data_dir


_OUTPUT_FILES = ("json", "scores", "save_adapted", "figure")  # options naming one output file, in any command


def _film_roots(files) -> list[Path]:
    """The data roots of films given by name: a film in a class folder (ROOT/<split>/NORMAL/x.png) makes ROOT/<split>
    a data folder that outputs stay out of."""
    from ..core.config import CLASSES

    out = []
    for f in files:
        parent = Path(f).expanduser().resolve().parent
        if parent.name in CLASSES:
            out.append(parent.parent)
    return out


def protected(args):
    """Everything this command reads, which none of its outputs may replace or land in (core.io.Protected): the
    checkpoint(s) and their run records, the run folders' records, the data folder, the manifest, the films and
    weights named (and the data folders of films in class folders), and the bundled fixture."""
    from ..core.io import Protected
    from ..core.runs import record_files
    from ..data.fixture import fixture_dir

    prot = Protected(folders=[fixture_dir()])
    for name in ("checkpoint", "init_from", "weights", "data_csv", "from_json"):
        v = getattr(args, name, None)
        if v:
            prot.add(files=[v])
            if name == "checkpoint" or name == "init_from":
                p = Path(v)
                prot.add(files=record_files(p if p.is_dir() else p.parent))
    for c in getattr(args, "checkpoints", None) or []:
        p = Path(c)
        prot.add(files=[c, *record_files(p if p.is_dir() else p.parent)])
    if args.command not in ("train", "run", "ablate"):  # those write their own run folders' records
        for d in getattr(args, "run_dirs", None) or []:
            prot.add(files=record_files(d))
    prot.add(folders=[getattr(args, "data_dir", None)])  # a manifest's image root may hold the user's project
    films = list(getattr(args, "images", None) or []) + list(getattr(args, "files", None) or [])
    prot.add(films=films, folders=_film_roots(films))
    return prot


def check_outputs(args) -> None:
    """Before any work: every output the command line names can be written, is not a link, and is none of the
    command's inputs (OutputError, one line)."""
    from ..core.io import ensure_writable_dir, ensure_writable_file

    names = [n for n in (*_OUTPUT_FILES, "out", "cam_dir") if getattr(args, n, None)]
    if not names:
        return
    prot = protected(args)
    for name in _OUTPUT_FILES:
        if getattr(args, name, None):
            ensure_writable_file(getattr(args, name), prot)
    out = getattr(args, "out", None)
    if out:
        file_out = args.command == "ensemble" or (args.command == "lungs" and args.action in ("train", "population"))
        (ensure_writable_file if file_out else ensure_writable_dir)(out, protect=prot)
    if getattr(args, "cam_dir", None):
        ensure_writable_dir(args.cam_dir, protect=prot)


def manifest_args(s) -> None:
    s.add_argument(
        "--data-csv",
        metavar="FILE",
        help="a CSV manifest instead of a folder: columns path,label,patient"
        "[,split] (labels NORMAL/PNEUMONIA); without split, patient-grouped val and test splits are built",
    )
    s.add_argument(
        "--image-root",
        metavar="DIR",
        help="with --data-csv: the folder its paths are relative to (default: the CSV's folder)",
    )


def default_workers() -> int:
    """DataLoader workers for this machine: none on 4 cores or fewer (the decoded films are in memory and the model
    needs the cores), else half the cores up to 8."""
    import os

    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(8, cores // 2)


def common_args(s, data_required: bool = False) -> None:
    """The options every training command shares (data source, device, profile, Grad-CAM count, pre-scan, workers)."""
    s.add_argument(
        "--data-dir",
        required=data_required,
        help="Kaggle-layout folder ROOT/{train,val,test}/{NORMAL,PNEUMONIA} (default: $PNEUMOLIB_DATA_DIR, "
        "else the bundled fixture)",
    )
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument(
        "--profile",
        choices=list(C.PROFILES),
        default=None,
        help="run size: smoke | fixture | cpu | gpu | full (default: fixture for the fixture, else cpu or gpu)",
    )
    s.add_argument("--cam-per-class", type=int_in(0, 1000), default=4, help="Grad-CAM images per class (0 = none)")
    s.add_argument(
        "--strict",
        action="store_true",
        help="refuse to start on any pre-scan finding: unreadable or identical files, patients in two splits "
        "(default: skip unreadable files and list everything)",
    )
    manifest_args(s)
    s.add_argument(
        "--workers",
        type=int_in(0, 64),
        default=default_workers(),
        help=f"DataLoader processes serving decoded films (default on this machine: {default_workers()}; "
        "results do not depend on it)",
    )


def command_line(args) -> str:
    """The command that asked for this run, as a user would type it (recorded in metrics.json and the model card):
    the arguments `main` parsed (args.argv), not the process's sys.argv (regression: `main([...])` called from
    Python, a notebook or a test worker recorded its host's command line, e.g. 'python -m pneumolib ' alone)."""
    return "python -m pneumolib " + shlex.join(map(str, args.argv))


def commit() -> str:
    from ..core.runtime import git_commit

    return git_commit()
