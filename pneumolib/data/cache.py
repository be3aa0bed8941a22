"""The decode cache: each film decoded once per view, in memory (bounded) and on disk (sealed entries)."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..core.config import ConfigError, View, as_view
from ..core.io import CheckpointError, OutputError, atomic_write
from ..data.imaging import (
    ImageError,
    check_readable,
    decode_cost,
    load_image,
    load_resized,
)
from ..data.lungs import SIZE as LUNG_SIZE
from ..data.lungs import LungBox, LungSegmenter, crop_film, mask_film, shipped_segmenter

# --- decoding once ----------------------------------------------------------------------
logger = logging.getLogger(__name__)


CACHE_ENV = "PNEUMOLIB_CACHE_DIR"  # on-disk decode cache; "off" disables it


DISK_KEY = ".key"  # DISK_KEY-<uid> in the cache folder: the user's private key that seals each entry


# what an entry on disk holds; an entry of another format is decoded again. 2: a crop box keeps its lung check's
# numbers (lungs.lung_numbers), worded when read; format-less entries kept the words, which never refreshed.
ENTRY_FORMAT = 2


def default_cache_dir() -> Path | None:
    env = os.environ.get(CACHE_ENV)
    if env and env.lower() == "off":
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pneumolib" / "decoded"


MEMORY_ENV = "PNEUMOLIB_CACHE_MEMORY"  # the in-memory cache's bound, e.g. 512M or 8G


DEFAULT_MEMORY_BYTES = 4 * 2**30  # 4 GiB: the Kaggle set at 224 px is about 0.26 GiB; CheXpert at 224 px about 11 GiB


def parse_bytes(text: str) -> int:
    """'512M', '8G', '1.5G', '1000000' -> bytes (K, M, G, T are powers of 1024)."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    try:
        n = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise ConfigError(f"{MEMORY_ENV}={text!r}: not a size (e.g. 512M, 8G)") from None
    if not math.isfinite(n):
        raise ConfigError(f"{MEMORY_ENV}={text!r}: not a finite size (e.g. 512M, 8G)")
    if n < 0:
        raise ConfigError(f"{MEMORY_ENV}={text!r}: a size cannot be negative")
    return int(n)


def default_memory_bytes() -> int:
    env = os.environ.get(MEMORY_ENV)
    return parse_bytes(env) if env else DEFAULT_MEMORY_BYTES


class DecodedCache:
    """Each file decoded once per view (size, and the lung crop if any), kept as uint8 in memory and, with
    `disk_dir`, on disk as one .npz per file and view, named by the file's content hash and the view, so a new process
    (a re-run notebook) does not decode again. Each entry carries the file's digest, the view and a seal (an HMAC
    with this user's private key): an entry that does not match its key, or that another user planted in a shared
    cache folder, is decoded again, never trusted. The disk cache is safe to delete at any time; an edited file has a new hash.
    A lung-cropped view also keeps each film's crop box (lungs.LungBox): where the crop came from, or why the
    whole film was kept. `segmenter`: the lung segmenter that draws the boxes (default: the shipped one, loaded
    when first needed).
    Memory is bounded (`memory_bytes`, default $PNEUMOLIB_CACHE_MEMORY or DEFAULT_MEMORY_BYTES): the least recently
    used images are dropped first, and come back from the disk cache when asked for again (boxes, a few hundred
    bytes each, are all kept). Several processes (ranks, DataLoader workers) may share one disk_dir: every file is
    written to a temp name and renamed into place, so a reader sees a whole file or none."""

    def __init__(
        self,
        disk_dir: str | Path | None = None,
        segmenter: LungSegmenter | None = None,
        memory_bytes: int | None = None,
    ):
        self._store: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._boxes: dict[tuple, LungBox] = {}
        self._masks: dict[tuple, np.ndarray] = {}  # a cropped view's whole-film lung mask at lungs.SIZE, bit-packed
        self.memory_bytes = default_memory_bytes() if memory_bytes is None else int(memory_bytes)
        self.nbytes = 0  # held in memory now
        self.disk_dir = Path(disk_dir).expanduser() if disk_dir else None
        self._key_bytes: bytes | None = None
        self._digests: dict[tuple, str] = {}  # this cache's films' content digests (one entry per file it has seen)
        self._segmenter = segmenter
        self._lock = threading.Lock()

    def lung_segmenter(self) -> LungSegmenter:
        """The lung segmenter this cache draws crop boxes with: the one it was made with, else the shipped one,
        loaded on first use (once: data.resources.Resources.segmenter is this, for every consumer of a context)."""
        with self._lock:
            if self._segmenter is None:
                self._segmenter = shipped_segmenter()
            return self._segmenter

    def segmenter(self, view: View, path: Path) -> LungSegmenter:
        """The lung segmenter for a cropped view; refuses a view whose boxes another segmenter drew."""
        self.lung_segmenter()
        if view.segmenter and view.segmenter != self._segmenter.digest:
            raise CheckpointError(
                f"{path}: this model was trained on lung crops drawn by segmenter "
                f"{view.segmenter}; this cache's segmenter is {self._segmenter.digest} "
                f"(install the pneumolib version the model was trained with)"
            )
        return self._segmenter

    def _disk_path(self, path: Path, view: View) -> tuple[Path, str]:
        """(where this file's decoded view is kept on disk, the file's content digest)."""
        digest = file_digest(path, self._digests)
        return self.disk_dir / view.tag / digest[:2] / f"{digest}.npz", digest

    def _secret(self) -> bytes | None:
        """This user's key for the disk cache's entries (DISK_KEY-<uid>, mode 0600, made on first use): an entry
        another user planted in a shared cache folder cannot carry a valid seal. None: no key can be had (no disk
        cache then)."""
        if self._key_bytes is None:
            f = self.disk_dir / f"{DISK_KEY}-{os.getuid() if hasattr(os, 'getuid') else 0}"
            try:
                self.disk_dir.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        out.write(os.urandom(32))
                except FileExistsError:
                    pass
                fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as src:
                    st = os.fstat(src.fileno())
                    key = src.read(64)
                if (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o077 or len(key) != 32:
                    return None  # not this user's private key: trust nothing signed with it
                self._key_bytes = key
            except OSError:
                return None
        return self._key_bytes

    def _seal(self, digest: str, view: View, arr: np.ndarray, box_json: str, packed: np.ndarray | None) -> str:
        import hmac

        mac = hmac.new(self._secret() or b"", digestmod="sha256")
        for part in (
            digest.encode(),
            view.tag.encode(),
            str(arr.shape).encode(),
            str(arr.dtype).encode(),
            arr.tobytes(),
            box_json.encode(),
            b"" if packed is None else packed.tobytes(),
        ):
            mac.update(len(part).to_bytes(8, "little") + part)
        return mac.hexdigest()

    def _read_disk(self, path: Path, view: View) -> tuple[np.ndarray, LungBox | None, np.ndarray | None] | None:
        """What an earlier process decoded for this file and view (image, crop box, packed lung mask), or None. An
        entry is used only when it names this file's content digest and this view, has the view's shape, and
        carries this user's seal over all of it; any other entry (damaged, stale, planted) is decoded again."""
        if self.disk_dir is None or self._secret() is None:
            return None
        target, digest = self._disk_path(path, view)
        try:
            with _ENTRY_READ, np.load(target, allow_pickle=False) as z:
                arr, box_json, packed = z["image"], str(z["box"]), z["mask"] if "mask" in z.files else None
                meta = json.loads(str(z["meta"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as e:  # damaged: decode again
            logger.info("%s: not a decode-cache entry (%s); decoded again", target, e)
            return None
        if isinstance(meta, dict) and meta.get("format") != ENTRY_FORMAT:
            logger.info("%s: a decode-cache entry of an older format; decoded again", target)
            return None
        ok = (
            isinstance(meta, dict)
            and meta.get("digest") == digest
            and meta.get("view") == view.tag
            and arr.shape == (view.size, view.size)
            and arr.dtype == np.uint8
            and (packed is None or (packed.dtype == np.uint8 and packed.size == (LUNG_SIZE * LUNG_SIZE + 7) // 8))
            and (view.crop == "none") == (box_json == "")
        )
        import hmac

        if not ok or not hmac.compare_digest(
            str(meta.get("seal", "")), self._seal(digest, view, arr, box_json, packed)
        ):
            logger.warning(
                "%s: a decode-cache entry that does not match its key (file %s, view %s); ignored and decoded again",
                target,
                path,
                view.tag,
            )
            return None
        try:
            box = LungBox.from_record(json.loads(box_json)) if box_json else None  # worded by today's rule
        except (ValueError, TypeError, KeyError):
            return None
        return arr, box, packed

    def _keep(
        self,
        path: Path,
        view: View,
        key: tuple,
        arr: np.ndarray,
        box: LungBox | None,
        from_disk: bool = False,
        mask: np.ndarray | None = None,
        packed: np.ndarray | None = None,
    ) -> np.ndarray:
        """Hold a decoded image (and its box and lung mask) in memory and, unless it came from there, on disk: one
        sealed entry per file and view (the image, its box and packed mask, the file's digest and the view)."""
        if packed is None and mask is not None:
            packed = np.packbits(np.asarray(mask, dtype=bool).ravel())
        if self.disk_dir is not None and not from_disk and self._secret() is not None:
            target, digest = self._disk_path(path, view)
            box_json = json.dumps(asdict(box)) if box is not None else ""
            meta = {
                "format": ENTRY_FORMAT,
                "digest": digest,
                "view": view.tag,
                "seal": self._seal(digest, view, arr, box_json, packed),
            }

            def write(tmp):
                with open(tmp, "wb") as f:  # a handle, so numpy does not append a suffix to the temp name
                    np.savez(
                        f,
                        image=arr,
                        box=np.array(box_json),
                        meta=np.array(json.dumps(meta)),
                        **({"mask": packed} if packed is not None else {}),
                    )

            try:
                atomic_write(target, write)
            except (OSError, OutputError):  # a read-only or full disk, a planted link: only costs speed
                pass
        with self._lock:
            if box is not None:
                self._boxes[key] = box
            if packed is not None:
                self._masks[key] = packed
            old = self._store.pop(key, None)
            self.nbytes += arr.nbytes - (old.nbytes if old is not None else 0)
            self._store[key] = arr
            while self.nbytes > self.memory_bytes and self._store:  # least recently used first
                _, dropped = self._store.popitem(last=False)
                self.nbytes -= dropped.nbytes
        return arr

    def _lookup(self, path: Path, view: View) -> tuple[tuple, np.ndarray | None]:
        """(memory key, the image if memory or the disk cache has it, else None)."""
        key = self._key(path, view)
        with self._lock:
            arr = self._store.get(key)
            if arr is not None:
                self._store.move_to_end(key)
                return key, arr
        hit = self._read_disk(path, view)
        if hit is not None:
            arr, box, packed = hit
            return key, self._keep(path, view, key, arr, box, from_disk=True, packed=packed)
        return key, None

    def _decode_many(self, paths: list[Path], view: View) -> list[np.ndarray]:
        """Decode films not cached yet; lung boxes are predicted in batches (one film at a time is ~20x slower)."""
        if view.crop == "none":
            return [self._keep(p, view, self._key(p, view), load_resized(p, view.size), None) for p in paths]
        films = [np.asarray(load_image(p), dtype=np.uint8) for p in paths]
        seg = self.segmenter(view, paths[0])

        def image(film, box, mask):
            if view.crop == "lung_mask":
                return mask_film(film, box, mask, view.size, view.dilation)
            return crop_film(film, box, view.size)

        return [
            self._keep(p, view, self._key(p, view), image(film, box, mask), box, mask=mask)
            for p, film, (box, mask) in zip(paths, films, seg.lung_fields(films, view.margin))
        ]

    @staticmethod
    def _key(path: Path, view: View) -> tuple:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ImageError(path, "no such file") from None
        return (str(path), view, st.st_mtime_ns, st.st_size)

    def _resolve(self, path: Path, view: int | View) -> View:
        """The view with the segmenter that draws its boxes named (so memory and disk are keyed by it)."""
        view = as_view(view)
        if view.crop != "none" and not view.segmenter:
            view = View(view.size, view.crop, view.margin, self.segmenter(view, path).digest, view.dilation)
        return view

    def get(self, path: str | Path, view: int | View) -> np.ndarray:
        """The file as the model's uint8 image for `view` (an int: the whole film squashed to that size)."""
        path = Path(path)
        view = self._resolve(path, view)
        _, arr = self._lookup(path, view)
        return arr if arr is not None else self._decode_many([path], view)[0]

    def box(self, path: str | Path, view: int | View) -> LungBox | None:
        """Where a cropped view's image came from on the film (None for a view without a crop)."""
        path = Path(path)
        view = self._resolve(path, view)
        if view.crop == "none":
            return None
        self.get(path, view)
        return self._boxes[self._key(path, view)]

    def lung_mask(self, path: str | Path, view: int | View) -> np.ndarray | None:
        """For a cropped view: the whole film's bool lung mask at lungs.SIZE x SIZE that drew its box (the box's
        problem is that mask's quality decision); None for a view without a crop. Grad-CAM's lung statistics and
        the shortcut audit read this mask, so they agree with the crop about every film."""
        path = Path(path)
        view = self._resolve(path, view)
        if view.crop == "none":
            return None
        self.get(path, view)
        key = self._key(path, view)
        packed = self._masks.get(key)
        if packed is None:  # an image decoded before masks were kept: segment the film again (same network, same size)
            film = np.asarray(load_image(path), dtype=np.uint8)
            box, mask = self.segmenter(view, path).lung_fields([film], view.margin)[0]
            packed = np.packbits(mask.ravel())
        with self._lock:
            self._masks[key] = packed
        return np.unpackbits(packed)[: LUNG_SIZE * LUNG_SIZE].reshape(LUNG_SIZE, LUNG_SIZE).astype(bool)

    def warm(
        self,
        paths: Iterable[Path],
        image_size: int | View,
        workers: int | None = None,
        progress: Callable | None = None,
    ) -> list[ImageError]:
        """Decode all paths, in parallel (PIL releases the GIL) and, for a lung crop, segmenting in batches; return
        the unreadable ones, never raise."""
        paths = [Path(p) for p in paths]
        if not paths:
            return []
        view = self._resolve(paths[0], image_size)
        workers = workers or min(8, (os.cpu_count() or 2) * 2)
        with ThreadPoolExecutor(workers) as pool:
            if view.crop == "none":  # decoding is all there is: one file per task
                return self._warm_whole(pool, workers, paths, view, progress)
            return self._warm_cropped(pool, paths, view, progress)

    def _warm_whole(self, pool, workers: int, paths: list[Path], view: View, progress) -> list[ImageError]:
        """warm without a crop: memory, not only the worker count, bounds what is decoded at once: films whose
        decode_cost is over DECODE_BUDGET / workers are decoded one at a time on this thread (in parallel, each
        thread's allocator would keep its own film's worth of memory), the others in parallel."""

        def cost(p):  # 0 for a film already decoded, or one the decode will refuse with its reason
            try:
                return 0 if self._lookup(p, view)[1] is not None else decode_cost(p)
            except (ImageError, OSError):
                return 0

        costs = list(pool.map(cost, paths))
        light = [p for p, c in zip(paths, costs) if c <= DECODE_BUDGET // workers]
        heavy = [p for p, c in zip(paths, costs) if c > DECODE_BUDGET // workers]
        it = itertools.chain(
            pool.map(lambda p: _guarded(lambda q: self.get(q, view), p), light),
            (_guarded(lambda q: self.get(q, view), p) for p in heavy),
        )
        results = list(progress(it, total=len(paths)) if progress else it)
        return [e for e in results if e is not None]

    def _warm_cropped(self, pool, paths: list[Path], view: View, progress) -> list[ImageError]:
        """warm with a lung crop: the films not yet cached are decoded and segmented in batches."""
        missing: list[Path] = []
        found = list(
            pool.map(lambda p: _guarded(lambda q: self._lookup(q, view)[1] is not None or missing.append(q), p), paths)
        )
        errors = [e for e in found if e is not None]
        missing.sort()  # threads append in any order; batches should not depend on it
        chunks = budget_chunks(missing)

        def chunk(ps):
            try:
                self._decode_many(ps, view)
                return []
            except (ImageError, OSError):  # find the unreadable ones one by one
                return [e for e in (_guarded(lambda q: self._decode_many([q], view), p) for p in ps) if e]

        it = map(chunk, chunks)  # the U-Net uses both cores already
        for errs in progress(it, total=len(chunks)) if progress else it:
            errors += errs
        return errors

    @classmethod
    def from_environment(cls, segmenter: LungSegmenter | None = None) -> "DecodedCache":
        """A new cache with the environment's settings: the disk folder $PNEUMOLIB_CACHE_DIR (default
        ~/.cache/pneumolib/decoded; "off": none) and the memory bound $PNEUMOLIB_CACHE_MEMORY."""
        return cls(default_cache_dir(), segmenter)

    def __len__(self) -> int:
        return len(self._store)


DECODE_BUDGET = 1 * 2**30  # bytes that decoding in parallel may hold at once (decode_cost of each film in flight)


# One entry read at a time in a process: numpy parses each array's header with ast.literal_eval, and CPython 3.11's
# AST constructor is not safe in several threads at once (python/cpython#106905: "SystemError: AST constructor
# recursion depth mismatch", met by warm's thread pool in CI). An entry is a few KB; the decodes stay parallel.
_ENTRY_READ = threading.Lock()


def _guarded(fn: Callable, p: Path) -> ImageError | None:
    """fn(p), and None; or the ImageError it raised (an OSError as one)."""
    try:
        fn(p)
        return None
    except ImageError as e:
        return e
    except OSError as e:
        return ImageError(p, str(e))


def budget_chunks(paths: list[Path], total: int = DECODE_BUDGET, most: int = 64) -> list[list[Path]]:
    """PATHS in order, in chunks of at most MOST films whose decode_cost adds up to at most TOTAL (a film over it
    alone): segmenting a chunk holds all its films at their own size."""
    chunks: list[list[Path]] = []
    size = 0
    for p in paths:
        c = decode_cost(p)
        if not chunks or len(chunks[-1]) >= most or (chunks[-1] and size + c > total):
            chunks.append([])
            size = 0
        chunks[-1].append(p)
        size += c
    return chunks


def file_digest(path: Path, memo: dict[tuple, str] | None = None) -> str:
    """SHA-1 of the file's bytes, read in 1 MB chunks after check_readable (a FIFO, device, folder or oversized file
    is refused before a byte is read); kept in MEMO (the caller's, e.g. a DecodedCache's) by path, size and
    modification time."""
    st = check_readable(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if memo is None or key not in memo:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(2**20), b""):
                h.update(chunk)
        if memo is None:
            return h.hexdigest()
        memo[key] = h.hexdigest()
    return memo[key]
