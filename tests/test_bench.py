"""The throughput bench, the decode-once cache, and the tensor transforms against the log's PIL versions."""

import json
import os
import time

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from pneumolib.cli import main
from pneumolib.data.dataset import DecodedCache
from pneumolib.data.fixture import fixture_dir
from pneumolib.data.transforms import build


def test_bench_reports_the_three_rates(tmp_path, capsys):
    js = tmp_path / "b.json"
    assert main(["bench", "--steps", "2", "--image-size", "64", "--batch-size", "8", "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    for k in ("plain_img_s", "pipeline_img_s", "compute_img_s", "device", "image_size"):
        assert k in r
    assert r["device"] == "cpu" and r["image_size"] == 64
    # each rate timed over exactly the steps asked for, at the batch size asked for (the warm-up steps excluded)
    assert all(r[f"{k}_images"] == 2 * 8 for k in ("plain", "pipeline", "compute"))
    assert r["pipeline_vs_plain"] == pytest.approx(r["pipeline_img_s"] / r["plain_img_s"])
    out = capsys.readouterr().out
    assert "pure compute" in out and "experiment baseline" in out
    assert r["experiment"] == "baseline"


def test_bench_runs_the_named_experiments_transforms_and_preprocessing(tmp_path, monkeypatch):
    import pneumolib.data.augment as A

    seen = []
    real = A.BatchAugment.from_specs
    monkeypatch.setattr(A.BatchAugment, "from_specs", classmethod(lambda cls, t: seen.append(t) or real(t)))
    js = tmp_path / "b.json"
    assert (
        main(
            [
                "bench",
                "--experiment",
                "recommended",
                "--steps",
                "1",
                "--image-size",
                "64",
                "--batch-size",
                "8",
                "--json",
                str(js),
            ]
        )
        == 0
    )
    r = json.loads(js.read_text())
    assert (
        r["experiment"] == "recommended" and r["normalize"] == "equalize_masked"
    )  # the recipe's, not the baseline's "none"
    from pneumolib.studies.catalogue import RECOMMENDED

    assert seen == [RECOMMENDED.train_transforms]  # the pipeline used the recipe's augmentation
    assert r["pipeline_images"] == 8


def test_bench_refuses_an_unknown_experiment(capsys):
    assert main(["bench", "--experiment", "no_such_recipe", "--steps", "1"]) == 2
    assert "no_such_recipe" in capsys.readouterr().err


def test_cache_decodes_once_and_again_when_the_file_changes(tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32), 10, np.uint8) + np.eye(32, dtype=np.uint8)).save(p)  # a picture, barely
    cache = DecodedCache()
    a = cache.get(p, 16)
    assert cache.get(p, 16) is a and len(cache) == 1  # second call: no decode
    assert cache.get(p, 8).shape == (8, 8) and len(cache) == 2  # keyed by size too
    time.sleep(0.01)
    Image.fromarray(np.full((32, 32), 200, np.uint8) + np.eye(32, dtype=np.uint8)).save(p)
    os.utime(p, ns=(time.time_ns(), time.time_ns()))
    assert 199 < cache.get(p, 16).mean() < 202  # edited file: decoded again, not served stale


def _pil_log_baseline():
    # the log's entry-1 pipeline on PIL images, minus the resize done at decode time
    return T.Compose(
        [
            T.RandomHorizontalFlip(0.5),
            T.RandomRotation(10),
            T.ColorJitter(brightness=0.2, contrast=0.2),
            T.Grayscale(num_output_channels=1),
            T.PILToTensor(),
        ]
    )


def _pil_strong_normal():
    return T.Compose(
        [
            T.RandomHorizontalFlip(),
            T.RandomRotation(20),
            T.GaussianBlur(3),
            T.ColorJitter(brightness=0.4, contrast=0.4),
            T.PILToTensor(),
        ]
    )


@pytest.mark.parametrize("name,pil", [("log_baseline", _pil_log_baseline), ("log_strong_normal", _pil_strong_normal)])
def test_tensor_transforms_match_the_logs_pil_pipelines_in_distribution(name, pil):
    img = np.array(Image.open(sorted((fixture_dir() / "train" / "PNEUMONIA").glob("*.png"))[0]))
    t_ours, t_pil = build(name), pil()
    x = torch.from_numpy(img).unsqueeze(0)

    def stats(fn, arg, n=300):
        torch.manual_seed(0)
        out = np.stack([fn(arg).float().numpy() for _ in range(n)])
        return out.mean(axis=(1, 2, 3)), out.std(axis=(1, 2, 3)), out.mean(0)

    m1, s1, avg1 = stats(t_ours, x)
    m2, s2, avg2 = stats(t_pil, Image.fromarray(img))
    assert abs(m1.mean() - m2.mean()) < 2.0 and abs(m1.std() - m2.std()) < 2.0  # brightness distribution
    assert abs(s1.mean() - s2.mean()) < 2.0  # contrast distribution
    assert np.abs(avg1 - avg2).mean() < 3.0  # same geometry on average (flip, rotation)


def test_disk_cache_serves_a_new_process_and_survives_damage(tmp_path, monkeypatch):
    import pneumolib.data.cache as C

    p = tmp_path / "x.png"
    Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)).save(p)
    first = DecodedCache(tmp_path / "cache").get(p, 16)
    files = list((tmp_path / "cache").rglob("*.npz"))
    assert len(files) == 1 and files[0].parent.parent.name == "16"

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(C, "load_resized", no_decoding)  # the decode cache decodes
    assert np.array_equal(DecodedCache(tmp_path / "cache").get(p, 16), first)  # a fresh cache: read from disk
    monkeypatch.undo()

    files[0].write_bytes(b"damaged")  # a damaged cache file is decoded again and rewritten
    assert np.array_equal(DecodedCache(tmp_path / "cache").get(p, 16), first)
    assert np.load(files[0])["image"].shape == (16, 16)

    Image.fromarray(np.eye(32, dtype=np.uint8)).save(p)  # new content, new key
    assert DecodedCache(tmp_path / "cache").get(p, 16).max() <= 1


def test_disk_cache_can_be_turned_off(monkeypatch):
    from pneumolib.data.dataset import default_cache_dir

    monkeypatch.setenv("PNEUMOLIB_CACHE_DIR", "off")
    assert default_cache_dir() is None
