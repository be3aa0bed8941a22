"""The decode cache at scale: memory bounded by bytes (least recently used out first), a disk cache several
processes can fill at once, and DataLoader workers that do not change a run."""

import multiprocessing as mp
from dataclasses import replace

import numpy as np
import pytest
import torch

from pneumolib.data.dataset import MEMORY_ENV, DecodedCache, default_memory_bytes, parse_bytes
from pneumolib.data.imaging import load_resized
from pneumolib.training.fit import fit

SIZE = 32  # 32 x 32 uint8: 1,024 bytes an image


def _paths(fixture_data, n):
    return [s.path for s in fixture_data["train"][:n]]


def test_memory_holds_at_most_its_bound_and_drops_the_least_recently_used(fixture_data):
    a, b, c = _paths(fixture_data, 3)
    cache = DecodedCache(None, memory_bytes=2 * SIZE * SIZE)
    cache.get(a, SIZE), cache.get(b, SIZE)
    cache.get(a, SIZE)  # a is now the most recently used
    cache.get(c, SIZE)  # over the bound: b goes
    assert cache.nbytes <= cache.memory_bytes and len(cache) == 2
    keys = {k[0] for k in cache._store}  # noqa: SLF001  (the test looks inside, the package never does)
    assert keys == {str(a), str(c)}
    assert np.array_equal(cache.get(b, SIZE), load_resized(b, SIZE))  # dropped images come back, decoded again


def test_a_dropped_image_comes_back_from_the_disk_cache_without_decoding(fixture_data, tmp_path, monkeypatch):
    a, b = _paths(fixture_data, 2)
    cache = DecodedCache(tmp_path, memory_bytes=SIZE * SIZE)
    first = cache.get(a, SIZE).copy()
    cache.get(b, SIZE)  # a is dropped from memory
    import pneumolib.data.cache as D  # the decode cache decodes

    monkeypatch.setattr(D, "load_resized", lambda *a, **k: pytest.fail("decoded again instead of read from disk"))
    assert np.array_equal(cache.get(a, SIZE), first)


def test_memory_bound_comes_from_the_environment(monkeypatch):
    assert (
        parse_bytes("512M") == 512 * 2**20 and parse_bytes("1.5G") == int(1.5 * 2**30) and parse_bytes("1000") == 1000
    )
    monkeypatch.setenv(MEMORY_ENV, "64M")
    assert default_memory_bytes() == 64 * 2**20 and DecodedCache().memory_bytes == 64 * 2**20
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("lots")


def _fill(disk_dir, paths, size, barrier):
    barrier.wait()  # every process starts writing the same files at the same moment
    cache = DecodedCache(disk_dir, memory_bytes=0)
    for _ in range(3):
        for p in paths:
            cache.get(p, size)


def test_several_processes_filling_one_disk_cache_at_once_leave_whole_files(fixture_data, tmp_path):
    paths = _paths(fixture_data, 40)
    ctx = mp.get_context("fork")  # as DataLoader workers start
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_fill, args=(tmp_path, paths, SIZE, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    files = sorted(tmp_path.rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]  # no temp file left behind
    assert len([f for f in files if f.suffix == ".npz"]) == len(paths)
    reader = DecodedCache(tmp_path)
    for p in paths:  # every file whole: read back from disk, equal to a fresh decode
        assert np.array_equal(reader.get(p, SIZE), load_resized(p, SIZE))


def test_dataloader_workers_do_not_change_the_trained_weights(fixture_data, tiny_config):
    cfg = replace(tiny_config, max_train_images=32)
    a = fit(cfg, fixture_data, workers=0).model.state_dict()
    b = fit(cfg, fixture_data, workers=2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _strict_segmenter():
    """The shipped network with a check no film passes (the area must be under 1%): every box is 'lungs not found'."""
    from pneumolib.data import lungs as L

    seg = L.LungSegmenter.load()
    return L.LungSegmenter(seg.net, seg.provenance, seg.threshold, L.LungCheck(max_area=0.01))


def test_regression_a_cached_lung_checks_words_are_rebuilt_from_its_numbers_with_the_current_rule(
    fixture_data, tmp_path, monkeypatch
):
    """Regression (issue 45): the decode cache stored a lung check's sentence ("area 0.18 outside 0.18-0.59"), so a
    message fixed in the code never reached a film decoded before. It stores the numbers, worded when read."""
    from pneumolib.core.config import View
    from pneumolib.data import lungs as L

    seg = _strict_segmenter()
    view = View(SIZE, "lungs", segmenter=seg.digest)
    path = _paths(fixture_data, 1)[0]
    first = DecodedCache(tmp_path, segmenter=seg).box(path, view)
    assert first.problem.startswith("lungs not found (area ") and "outside 0.100-0.010" in first.problem
    assert first.numbers["mask"]["area"] > 0.01

    rule = L.LungCheck.words
    monkeypatch.setattr(L.LungCheck, "words", lambda self, s: "today's words: " + rule(self, s))
    monkeypatch.setattr(seg, "lung_fields", lambda *a: pytest.fail("the entry was decoded again, not read"))
    again = DecodedCache(tmp_path, segmenter=seg).box(path, view)
    assert (
        again.problem == f"lungs not found (today's words: {rule(seg.check, first.numbers['mask'])}): whole film used"
    )
    assert (again.y0, again.y1, again.x0, again.x1) == (first.y0, first.y1, first.x0, first.x1)


def test_a_cached_entry_that_kept_only_the_words_is_decoded_again(fixture_data, tmp_path):
    """An entry written before the cache stored numbers (its box holds the sentence only, no format) is not used."""
    import json

    from pneumolib.core.config import View

    seg = _strict_segmenter()
    view = View(SIZE, "lungs", segmenter=seg.digest)
    path = _paths(fixture_data, 1)[0]
    writer = DecodedCache(tmp_path, segmenter=seg)
    box = writer.box(path, view)
    target, digest = writer._disk_path(path, writer._resolve(path, view))  # noqa: SLF001  (an old entry, made here)
    with np.load(target) as z:
        arr, packed = z["image"], z["mask"]
    old_box = json.dumps({k: getattr(box, k) for k in ("y0", "y1", "x0", "x1")} | {"problem": "area 0.18 outside"})
    meta = {"digest": digest, "view": view.tag, "seal": writer._seal(digest, view, arr, old_box, packed)}  # noqa: SLF001
    with open(target, "wb") as f:
        np.savez(f, image=arr, box=np.array(old_box), meta=np.array(json.dumps(meta)), mask=packed)
    calls = []
    real = seg.lung_fields
    seg.lung_fields = lambda films, margin: calls.append(len(films)) or real(films, margin)
    again = DecodedCache(tmp_path, segmenter=seg).box(path, view)
    assert calls == [1] and again.problem == box.problem and again.numbers is not None


def test_disk_entries_are_read_one_at_a_time_while_warm_decodes_in_parallel_regression(
    fixture_data, tmp_path, monkeypatch
):
    # CI: warm's threads read entries at once, and numpy's header parse (ast.literal_eval) raised CPython 3.11's
    # "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905)
    import threading
    import time

    import pneumolib.data.cache as D

    paths = _paths(fixture_data, 12)
    DecodedCache(tmp_path).warm(paths, SIZE, workers=4)  # the entries, on disk
    inside, most, guard = [0], [0], threading.Lock()
    real = np.load

    def slow_load(*a, **k):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)  # widen the window two unguarded readers would share
        with guard:
            inside[0] -= 1
        return real(*a, **k)

    monkeypatch.setattr(D.np, "load", slow_load)
    fresh = DecodedCache(tmp_path)  # an empty memory: every film is read from disk, on four threads
    assert fresh.warm(paths, SIZE, workers=4) == [] and len(fresh) == len(paths)
    assert most[0] == 1
