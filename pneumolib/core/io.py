"""One writer for every file pneumolib writes (`atomic_write`), one reader for every JSON record (`read_record`).

The bottom layer every module that saves or reads a record uses. The writer writes a temporary file beside the
target and renames it into place, so a kill, a Ctrl-C or a full disk never leaves half a file. It never writes
through a symbolic link (a link at the target is refused, and so is a link standing where pneumolib makes a folder
of its own), keeps the umask's mode (a group can read a shared run folder when the umask lets it), and refuses a
target that resolves to a protected input (`protect`): a command's checkpoint, its run records, its data files and
folders, its manifest. A full disk is one line naming the file."""

from __future__ import annotations

import errno
import io
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint (or saved weights) that cannot be used; str() is one line naming the file and the problem."""


class DataError(ValueError):
    """A data folder that cannot be used; str() is one line naming the folder and the problem."""


class OutputError(ValueError):
    """An output place that cannot be written (a file where a folder is needed, no permission, a full disk, a link,
    an input of the same command); str() is one line naming it. Checked before the work that would fill it starts."""


class RecordError(ValueError):
    """A record in a run folder (metrics.json, an evaluation) that is not what pneumolib wrote there."""


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_error(path: str | Path, e: BaseException) -> OutputError:
    """One line for an OSError (or torch's RuntimeError around one) met while writing PATH."""
    code = getattr(e, "errno", None)
    text = str(e)
    if code in _FULL or isinstance(e, RuntimeError):  # torch.save's RuntimeError hides the errno: ask the disk
        try:
            free = shutil.disk_usage(Path(path).parent if str(Path(path).parent) else ".").free
        except OSError:
            free = 0
        why = (
            "disk full"
            if code in (errno.ENOSPC, errno.EDQUOT) or free < 16 * 2**20
            else "file too large for this file system (or a file-size limit)"
        )
        return OutputError(f"{path}: cannot write it: {why} (nothing was written; free some space and run again)")
    return OutputError(f"{path}: cannot write it ({getattr(e, 'strerror', None) or ' '.join(text.split())[:160]})")


def umask() -> int:
    """This process's umask, read without changing it where /proc says it (else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the umask (mkstemp's 0o600 is for the temp name only)."""
    return 0o666 & ~umask()


class Protected:
    """The inputs of one command that no output of it may replace or land in: files (a checkpoint, a manifest, a
    film, a run record) and folders (a data folder: nothing is written inside it)."""

    def __init__(
        self, files: Iterable[str | Path] = (), folders: Iterable[str | Path] = (), films: Iterable[str | Path] = ()
    ):
        self.files, self.folders, self.film_folders = set(), set(), set()
        self.add(files, folders, films)

    def add(
        self, files: Iterable[str | Path] = (), folders: Iterable[str | Path] = (), films: Iterable[str | Path] = ()
    ) -> "Protected":
        """FILES may not be replaced; nothing is written inside FOLDERS; FILMS may not be replaced, and no output
        folder may be the folder that holds one (an overlay filed beside the test films would be read as one)."""
        films = [_real(p) for p in films if p]
        self.files |= {_real(p) for p in files if p} | set(films)
        self.folders |= {_real(p) for p in folders if p}
        self.film_folders |= {p.parent for p in films}
        return self

    def why(self, target: str | Path) -> str | None:
        """Why TARGET may not be written (it is an input, or lies in a data folder), or None."""
        t = _real(target)
        if t in self.files:
            return "it is an input of this command; writing there would destroy it"
        for d in self.folders:
            if t == d or d in t.parents:
                return f"it is inside the data folder {d}; outputs never go into the data"
        return None

    def why_folder(self, folder: str | Path) -> str | None:
        """Why FOLDER may not receive outputs: it is or lies in a data folder, or holds an input film."""
        f = _real(folder)
        for d in self.folders:
            if f == d or d in f.parents:
                return f"it is inside the data folder {d}; outputs never go into the data"
        if f in self.film_folders:
            return "it holds films this command reads; outputs go into a folder of their own"
        return None


def _real(p: str | Path) -> Path:
    return Path(os.path.realpath(Path(p).expanduser()))


NO_PROTECTION = Protected()


def check_target(path: str | Path, protect: Protected | None = None) -> Path:
    """Refuse a target file that is a symbolic link, a folder, or a protected input (OutputError, one line)."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(
            f"{path}: is a symbolic link; pneumolib never writes through one (remove it, or choose another name)"
        )
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for the output")
    why = (protect or NO_PROTECTION).why(path)
    if why:
        raise OutputError(f"{path}: refused as an output: {why}")
    return path


def make_dir(path: str | Path, *, ours: bool = False, protect: Protected | None = None) -> Path:
    """Make a folder (and its parents) for outputs. OURS: a folder pneumolib names inside another (a run folder's
    evaluations/ or gradcam/): a symbolic link standing there is refused, so records never land elsewhere.

    Raises:
        OutputError: a file where the folder should be, a link where ours should be, a protected place, no
            permission.
    """
    path = Path(path)
    if ours and path.is_symlink():
        raise OutputError(
            f"{path}: is a symbolic link where pneumolib keeps a folder of its own; remove it (nothing "
            "is written through it)"
        )
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; give a folder (or a new name) for the output")
    why = (protect or NO_PROTECTION).why_folder(path)
    if why:
        raise OutputError(f"{path}: refused as an output folder: {why}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(path, e) from None
    return path


def ensure_writable_dir(path: str | Path, *, ours: bool = False, protect: Protected | None = None) -> Path:
    """Make the folder (and its parents) if needed and prove that a file can be created in it (make_dir's checks
    first).

    Args:
        path: the output folder.

    Returns:
        The folder.

    Raises:
        OutputError: the path is a file, a parent is a file, the folder cannot be written, a link stands where
            pneumolib's own folder goes, or it is a protected place.
    """
    path = make_dir(path, ours=ours, protect=protect)
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".pneumolib-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write there ({e.strerror or e})") from None
    return path


def ensure_writable_file(path: str | Path, protect: Protected | None = None) -> Path:
    """Check, before the work starts, that PATH can be written as a file: not a link, not a folder, not a protected
    input, its folder writable.

    Raises:
        OutputError: naming the path and the problem.
    """
    path = check_target(path, protect)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: cannot write there (permission denied)")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return path


def atomic_write(path: str | Path, write: Callable[[str], Any], protect: Protected | None = None) -> Path:
    """The one writer: WRITE(tmp) fills a temp file beside PATH, which is then renamed over it (a reader sees the
    whole old file or the whole new one; a kill leaves no half file). Never through a link, never over a protected
    input; the file gets the umask's mode; a full disk or another OS error is one OutputError line naming PATH."""
    path = check_target(path, protect)
    make_dir(path.parent if str(path.parent) else Path("."))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise disk_error(path, e) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as e:
        raise disk_error(path, e) from None
    except RuntimeError as e:  # torch.save wraps the OS error ('PytorchStreamWriter failed writing file ...',
        # '[enforce fail at inline_container.cc] unexpected pos ...')
        if "inline_container" in str(e) or "PytorchStreamWriter" in str(e) or "writ" in str(e):
            raise disk_error(path, e) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: str | Path, data: bytes, protect: Protected | None = None) -> Path:
    """DATA to PATH through the one writer."""

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write, protect)


def write_text(path: str | Path, text: str, protect: Protected | None = None) -> Path:
    """TEXT (UTF-8) to PATH through the one writer."""
    return write_bytes(path, text.encode("utf-8"), protect)


def save_figure(fig, path: str | Path, protect: Protected | None = None, **kw: Any) -> Path:
    """A matplotlib figure rendered to memory, then written by the one writer (savefig itself follows links)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", **kw)
    return write_bytes(path, buf.getvalue(), protect)


def save_image(image, path: str | Path, protect: Protected | None = None, **kw: Any) -> Path:
    """A PIL image encoded in memory (format from the suffix), then written by the one writer."""
    buf = io.BytesIO()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(Path(path).suffix.lstrip(".").lower(), "PNG")
    image.save(buf, format=fmt, **kw)
    return write_bytes(path, buf.getvalue(), protect)


def save_json(obj: Any, path: str | Path, protect: Protected | None = None) -> Path:
    """JSON (indented, non-JSON values as str), written by the one writer."""
    return write_text(path, json.dumps(obj, indent=2, default=str), protect)


# --- reading records -----------------------------------------------------------------------------------------
MAX_RECORD_BYTES = 64 * 2**20  # pneumolib's largest record (a candidates table) is a few MB
MAX_RECORD_DEPTH = 24  # pneumolib nests at most ~8 deep
# keys whose values pneumolib always writes as numbers (or null), as mappings, or as text: a planted record whose
# value at one of them has another type is refused, not formatted into a crash
# a metrics or evaluation record's summary fields, at its top level and in its 'test', 'val' and 'adapted' parts:
# numbers (or null), mappings and text where pneumolib writes them; a planted record with another type there is
# refused, not formatted into a crash
NUMBER_KEYS = frozenset(
    {"accuracy", "auc", "sensitivity", "specificity", "ece", "threshold", "seconds", "checkpoint_threshold"}
)
MAPPING_KEYS = frozenset({"test", "val", "adapted", "config", "stress"})
TEXT_KEYS = frozenset({"experiment", "entry", "date", "command", "commit", "cohort", "split"})


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, without recursion (a crafted record cannot exhaust the stack here)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if d > limit:
            return d
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def _type_problem(rec: dict[str, Any]) -> str | None:
    """The first summary field whose value has a type pneumolib never writes there, or None."""
    parts = [("", rec)] + [(f"{k}.", rec[k]) for k in ("test", "val", "adapted") if isinstance(rec.get(k), dict)]
    for prefix, d in parts:
        for k, v in d.items():
            if v is None:
                continue
            if k in NUMBER_KEYS and (isinstance(v, bool) or not isinstance(v, (int, float))):
                return f"{prefix}{k} is {json.dumps(v, default=str)[:40]}, not a number"
            if k in MAPPING_KEYS and not isinstance(v, dict):
                return f"{prefix}{k} is a {type(v).__name__}, not a mapping"
            if k in TEXT_KEYS and not prefix and not isinstance(v, str):
                return f"{k} is a {type(v).__name__}, not text"
    return None


def read_record(path: str | Path, typed: bool = True) -> dict[str, Any]:
    """The one reader of pneumolib's JSON records: a mapping, at most MAX_RECORD_BYTES, nested at most
    MAX_RECORD_DEPTH deep, numbers where pneumolib writes numbers. Data, never code.

    Raises:
        RecordError: one line naming the file and what is wrong with it.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise RecordError(f"{path}: not a regular file")
        if size > MAX_RECORD_BYTES:
            raise RecordError(f"{path}: {size / 2**20:.0f} MB, larger than any record pneumolib writes")
        text = path.read_text(encoding="utf-8")
        rec = json.loads(text)
    except FileNotFoundError:
        raise
    except RecursionError:
        raise RecordError(f"{path}: not a pneumolib record (nested too deep)") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not readable JSON ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(rec, dict):
        raise RecordError(f"{path}: not a pneumolib record (a JSON {type(rec).__name__}, not a mapping)")
    if _depth(rec, MAX_RECORD_DEPTH) > MAX_RECORD_DEPTH:
        raise RecordError(f"{path}: not a pneumolib record (nested deeper than {MAX_RECORD_DEPTH} levels)")
    problem = _type_problem(rec) if typed else None
    if problem:
        raise RecordError(f"{path}: not a pneumolib record ({problem})")
    return rec


def load_json(path: str | Path) -> Any:
    """Plain JSON that is an input the user gave (not a record of a run): read as data."""
    return json.loads(Path(path).read_text())


def load_record(path: str | Path) -> dict[str, Any] | None:
    """A record this package wrote beside a checkpoint (a stress test, an audit, an evaluation), or None when the
    file is absent or is not such a record (damaged, or planted: it is data, never code, is logged, and whoever
    needs it computes it again)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return read_record(path)
    except (RecordError, FileNotFoundError) as e:
        log.warning("%s; ignored (computed again where needed)", str(e)[:200])
        return None


def finite(v: Any) -> bool:
    """A real, finite number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
