import filecmp

import numpy as np
import pytest

from pneumolib.data.fixture import FIXTURE_COUNTS, fixture_dir, make_phantom, mask_for, write_fixture


def test_generator_reproduces_the_shipped_fixture_byte_for_byte(tmp_path):
    out = write_fixture(tmp_path / "fx")
    shipped = sorted(p.relative_to(fixture_dir()) for p in fixture_dir().rglob("*.png"))
    made = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert shipped == made and len(made) > 100
    mismatch = [str(p) for p in made if not filecmp.cmp(out / p, fixture_dir() / p, shallow=False)]
    assert mismatch == []


def test_generator_is_seeded(tmp_path):
    a = write_fixture(tmp_path / "a", counts={"train": 2}, seed=1)
    b = write_fixture(tmp_path / "b", counts={"train": 2}, seed=2)
    f = "train/NORMAL/IM-0001-0001.png"
    assert not filecmp.cmp(a / f, b / f, shallow=False)


def test_shipped_fixture_layout_and_masks():
    root = fixture_dir()
    for split, n in FIXTURE_COUNTS.items():
        for cls in ("NORMAL", "PNEUMONIA"):
            files = list((root / split / cls).glob("*.png"))
            assert len(files) == n
            assert all(mask_for(f) is not None for f in files)
            assert all((mask_for(f, "lesions") is not None) == (cls == "PNEUMONIA") for f in files)


@pytest.mark.parametrize("seed", range(4))
def test_phantom_anatomy(seed):
    n = make_phantom(np.random.default_rng(seed), pneumonia=False, size=64)
    p = make_phantom(np.random.default_rng(seed), pneumonia=True, size=64)
    assert n.image.dtype == np.uint8 and n.image.shape == (64, 64)
    assert 0.05 < n.lungs.mean() < 0.4  # two lung fields of plausible size
    left, right = n.lungs[:, :32].sum(), n.lungs[:, 32:].sum()
    assert left > 0 and right > 0
    assert not n.lesions.any()
    assert p.lesions.any() and not (p.lesions & ~p.lungs).any()  # opacities lie inside the lungs
    # opacities brighten the lung where they are
    assert p.image[p.lesions].mean() > p.image[p.lungs & ~p.lesions].mean() + 10
