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
