"""Pre-scan hygiene: duplicates by content within and across splits and classes, patients in two splits."""
import shutil
import time

import pytest

from pneumolib.data import DataError, DecodedCache, discover, prescan
from pneumolib.fixture import fixture_dir


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(fixture_dir(), root)
    n = root / "train" / "NORMAL"
    first = sorted(n.glob("*.png"))[0]
    shutil.copy(first, n / "copy-within.png")  # same class, same split
    shutil.copy(first, root / "train" / "PNEUMONIA" / "copy-across-class.png")  # labelled both ways
    shutil.copy(first, root / "test" / "NORMAL" / "copy-across-split.png")  # leaks into test
    shutil.copy(sorted(n.glob("IM-*.png"))[1], root / "test" / "NORMAL" / "IM-0002-0009.png")  # patient IM-0002 in test
    return root


def test_clean_fixture_has_no_findings():
    data = prescan(discover(fixture_dir()), 64, cache=DecodedCache())
    assert data.hygiene.n_problems == 0


def test_duplicates_and_shared_patients_are_reported_in_a_table(messy):
    data = prescan(discover(messy), 64, cache=DecodedCache())
    h = data.hygiene
    assert len(h.duplicates) == 2  # the first image's group of 4, and IM-0002's group of 2
    big = max(h.duplicates, key=len)
    assert len(big) == 4 and {s.split for s in big} == {"train", "test"} and {s.label for s in big} == {0, 1}
    assert "IM-0002" in h.shared_patients and h.shared_patients["IM-0002"] == ["test", "train"]
    table = h.table()
    assert "identical files across splits" in table and "patients in two or more splits" in table


def test_strict_refuses_any_finding(messy):
    with pytest.raises(DataError, match="strict mode refuses to start .*duplicate group"):
        prescan(discover(messy), 64, strict=True, cache=DecodedCache())


def test_training_log_shows_the_prescan_table(messy):
    from dataclasses import replace

    from pneumolib.config import apply_profile, get_config
    from pneumolib.train import fit

    logs = []
    fit(replace(apply_profile(get_config("01"), "fixture"), epochs=1, max_train_images=16), discover(messy),
        log=logs.append)
    assert any("pre-scan of" in s and "identical files" in s for s in logs)


def test_scan_is_fast_and_cached(messy):
    data = discover(messy)
    cache = DecodedCache()
    t = time.perf_counter()
    prescan(data, 64, cache=cache)
    first = time.perf_counter() - t
    t = time.perf_counter()
    prescan(data, 64, cache=cache)
    assert time.perf_counter() - t <= first + 0.05
    assert first < 10


def test_symlinked_images_are_read_and_broken_links_ignored(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(fixture_dir(), root)
    src = sorted((root / "train" / "NORMAL").glob("*.png"))[0]
    (root / "train" / "NORMAL" / "linked.png").symlink_to(src)
    (root / "train" / "NORMAL" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    data = discover(root)
    names = {s.path.name for s in data["train"]}
    assert "linked.png" in names and "dangling.png" not in names
    # the link and its target are the same bytes: reported as a duplicate, not silently double-counted
    assert prescan(data, 64, cache=DecodedCache()).hygiene.duplicates
