"""Pre-scan hygiene: duplicates by content within and across splits and classes, patients in two splits."""

import shutil

import pytest

from pneumolib.data.dataset import DataError, DecodedCache, discover, prescan
from pneumolib.data.fixture import fixture_dir
from pneumolib.data.resources import Resources


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
    data = prescan(discover(fixture_dir()), 64, resources=Resources(DecodedCache()))
    assert data.hygiene.n_problems == 0


def test_duplicates_and_shared_patients_are_reported_in_a_table(messy):
    data = prescan(discover(messy), 64, resources=Resources(DecodedCache()))
    h = data.hygiene
    assert len(h.duplicates) == 2  # the first image's group of 4, and IM-0002's group of 2
    big = max(h.duplicates, key=len)
    assert len(big) == 4 and {s.split for s in big} == {"train", "test"} and {s.label for s in big} == {0, 1}
    assert "IM-0002" in h.shared_patients and h.shared_patients["IM-0002"] == ["test", "train"]
    table = h.table()
    assert "identical files across splits" in table and "patients in two or more splits" in table


def test_strict_refuses_any_finding(messy):
    with pytest.raises(DataError, match="strict mode refuses to start .*duplicate group"):
        prescan(discover(messy), 64, strict=True, resources=Resources(DecodedCache()))


def test_training_log_shows_the_prescan_table(messy, caplog):
    from dataclasses import replace

    from pneumolib.core.config import apply_profile
    from pneumolib.studies.catalogue import get_config
    from pneumolib.training.fit import fit

    with caplog.at_level("INFO", logger="pneumolib"):
        fit(replace(apply_profile(get_config("01"), "fixture"), epochs=1, max_train_images=16), discover(messy))
    assert any("pre-scan of" in r.getMessage() and "identical files" in r.getMessage() for r in caplog.records)


def test_second_prescan_decodes_nothing(messy, monkeypatch):
    # "cached" proved by counting decodes, not by timing
    import pneumolib.data.cache as D  # the decode cache decodes

    calls = []
    real = D.load_resized
    monkeypatch.setattr(D, "load_resized", lambda p, size: calls.append(p) or real(p, size))
    data = discover(messy)
    cache = DecodedCache()
    prescan(data, 64, resources=Resources(cache))
    first = len(calls)
    prescan(data, 64, resources=Resources(cache))
    assert first > 0 and len(calls) == first


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
    assert prescan(data, 64, resources=Resources(DecodedCache())).hygiene.duplicates


def test_an_empty_cache_passed_in_is_used_not_swapped_for_the_default_regression(messy):
    # regression: DecodedCache defines __len__, so a fresh (empty) one was falsy and `cache or DEFAULT_CACHE`
    # replaced it by the process-wide default cache (there is no process-wide cache any more; the caller's is used)
    cache = DecodedCache()
    assert len(cache) == 0
    data = prescan(discover(messy), 64, resources=Resources(cache))
    assert data.cache is cache
    assert len(cache) == sum(1 for _ in messy.rglob("*.png")) - len(list((messy / "masks").rglob("*.png"))) - len(
        list((messy / "lesions").rglob("*.png"))
    )
