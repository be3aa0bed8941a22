"""The shortcut audit: the probe's statistics, reliance on pixels outside / inside the lungs, worst-group recall."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pneumolib.cli import main
from pneumolib.core.stats import auc_with_interval
from pneumolib.data.dataset import DecodedCache, Sample, discover
from pneumolib.data.fixture import fixture_dir
from pneumolib.data.resources import Resources
from pneumolib.models.checkpoint import Predictor, preprocessing_for
from pneumolib.studies import shortcuts as S
from pneumolib.studies.catalogue import get_config


def test_global_stats_see_a_black_border_and_sharpness_not_anatomy():
    rng = np.random.default_rng(0)
    plain = np.full((S.PROBE_SIZE, S.PROBE_SIZE), 120, np.uint8)
    framed = plain.copy()
    framed[: S.BORDER] = 0
    noisy = np.clip(plain + rng.normal(0, 20, plain.shape), 0, 255).astype(np.uint8)
    f = dict(zip(S.PROBE_FEATURES, S.global_stats(plain)))
    g = dict(zip(S.PROBE_FEATURES, S.global_stats(framed)))
    h = dict(zip(S.PROBE_FEATURES, S.global_stats(noisy)))
    assert f["black_share"] == 0 and g["black_share"] == pytest.approx(S.BORDER / S.PROBE_SIZE)
    assert g["border_top_mean"] == 0 and g["border_bottom_mean"] == 120
    assert h["log_laplacian_var"] > f["log_laplacian_var"] + 5


class RegionModel(nn.Module):
    """A 'model' whose PNEUMONIA logit is the brightness of one fixed region: it looks only there."""

    def __init__(self, rows, cols):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.scale = nn.Parameter(torch.tensor(12.0))

    def forward(self, x):
        v = x[:, :1, self.rows, self.cols].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(v), self.scale * (v - 0.35)], dim=1)


def _films(n=8, size=64):
    """Films with a bright corner (outside the lungs) on half of them, and lungs as two boxes."""
    rng = np.random.default_rng(1)
    mask = np.zeros((size, size), bool)
    mask[16:52, 8:28] = True
    mask[16:52, 36:56] = True
    imgs = []
    for i in range(n):
        a = rng.integers(60, 90, (size, size)).astype(np.uint8)
        a[:8, :8] = 230 if i % 2 else 10  # the 'shortcut': a marker in the corner
        a[20:30, 12:24] = 200 if i % 2 else 40  # the 'finding': a bright patch inside the left lung
        imgs.append(a)
    return imgs, mask


def _setup(tmp_path, rows, cols):
    imgs, mask = _films()
    samples = []
    for i, a in enumerate(imgs):
        p = tmp_path / f"f{i}.png"
        Image.fromarray(a).save(p)
        samples.append(Sample(p, i % 2, f"p{i}", "val"))
    cfg = replace(get_config("baseline"), image_size=64)
    pre = preprocessing_for(cfg)
    pred = Predictor(RegionModel(rows, cols), cfg, 0.5, pre, resources=Resources(DecodedCache()))
    return pred, samples, [mask] * len(samples)


def test_a_model_that_reads_the_corner_relies_outside_the_lungs_not_inside(tmp_path):
    pred, samples, masks = _setup(tmp_path, slice(0, 8), slice(0, 8))
    out = S.reliance(pred, samples, masks, "outside")
    inside = S.reliance(pred, samples, masks, "inside")
    assert out["flipped_share"] >= 0.5 and out["mean_abs_change"] > 0.3
    assert inside["flipped_share"] == 0 and inside["mean_abs_change"] < 0.01
    assert out["n"] == 8 and set(out["per_class"]) == {"NORMAL", "PNEUMONIA"}


def test_a_model_that_reads_the_lung_relies_inside_not_outside(tmp_path):
    pred, samples, masks = _setup(tmp_path, slice(20, 30), slice(12, 24))
    out = S.reliance(pred, samples, masks, "outside")
    inside = S.reliance(pred, samples, masks, "inside")
    assert out["flipped_share"] == 0 and out["mean_abs_change"] < 0.01
    assert inside["flipped_share"] >= 0.5


def test_films_whose_masks_failed_are_left_out_and_counted(tmp_path):
    pred, samples, masks = _setup(tmp_path, slice(0, 8), slice(0, 8))
    masks[0] = None
    out = S.reliance(pred, samples, masks, "outside")
    assert out["n"] == 7 and out["left_out"] == 1


def test_worst_group_is_the_class_half_the_probe_finds_atypical_when_the_model_follows_the_probe():
    samples = [Sample(f"f{i}", i % 2, f"p{i}", "val") for i in range(40)]
    labels = np.array([s.label for s in samples])
    probe = np.linspace(0, 1, 40)
    probs = probe.copy()  # a model that is the probe: right where the probe agrees, wrong where it does not
    rep = S.worst_group(samples, probs, 0.5, probe)
    recall = {(g["class"], g["half"]): g["recall"] for g in rep["groups"]}
    assert recall[("NORMAL", "probe agrees")] == 1.0 and recall[("PNEUMONIA", "probe agrees")] == 1.0
    assert recall[("NORMAL", "probe disagrees")] == 0.0 and recall[("PNEUMONIA", "probe disagrees")] == 0.0
    assert rep["worst"]["recall"] == 0.0 and all(g["n"] == 10 for g in rep["groups"])
    fair = S.worst_group(samples, labels.astype(float), 0.5, probe)  # a model right on every film
    assert fair["worst"]["recall"] == 1.0


def test_auc_interval_by_patient_brackets_the_auc():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    scores = labels + rng.normal(0, 0.8, 100)
    auc, ci = auc_with_interval(labels, scores, [f"p{i // 2}" for i in range(100)])
    assert ci[0] < auc < ci[1] and 0.7 < auc < 0.95


def test_cli_shortcuts_on_a_fixture_run_writes_every_field(run_copy, tmp_path, capsys):
    js = tmp_path / "s.json"
    assert main(["shortcuts", str(run_copy), "--data-dir", str(fixture_dir()), "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    for key in (
        "probe_auc",
        "probe_auc_ci95",
        "probe_auc_model_input",
        "outside_lung_reliance",
        "inside_lung_reliance",
        "worst_group",
        "masks",
        "split",
    ):
        assert key in rep, key
    assert rep["split"] == "val" and rep["masks"]["annotated"] == rep["n"]  # the fixture's exact masks
    assert (run_copy / "shortcuts_val.json").is_file()
    assert "shortcut probe" in capsys.readouterr().out
    assert len(discover(fixture_dir(), seed=0)["val"]) == rep["n"]
    assert main(["card", str(run_copy)]) == 0  # the model card shows the audit kept in the run folder
    card = (run_copy / "MODEL_CARD.md").read_text()
    assert "## Shortcut audit" in card and "shortcut probe" in card and "Not run." not in card.split("## Shortcut")[1]
