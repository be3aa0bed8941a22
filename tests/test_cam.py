import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pneumolib.analysis.cam import (
    CAM,
    METHODS,
    class_targets,
    explain,
    explain_predictor,
    first_per_class,
    heart_box_mask,
    lift,
    lower_central_share,
    lung_focus,
    random_maps,
    randomise_top,
    rank_correlation,
    resolve_layer,
    road,
    sanity_checks,
)
from pneumolib.analysis.evaluate import predict_samples
from pneumolib.cli import main
from pneumolib.core.stats import patient_bootstrap
from pneumolib.data.fixture import fixture_dir, make_phantom, mask_for
from pneumolib.models.checkpoint import Predictor, save_checkpoint


@pytest.mark.parametrize("method", list(METHODS))
def test_cam_methods_give_one_normalised_map_per_image(trained_run, method):
    model = trained_run.predictor.model
    x = torch.rand(3, 3, 64, 64)
    with CAM(model, method) as cam:
        raw = cam(x, class_targets([1, 1, 0]))
        maps = cam.maps(x, [1, 1, 0])
    assert raw.shape == maps.shape == (3, 64, 64) and raw.min() >= 0
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    peak = raw.max(axis=(1, 2), keepdims=True)  # one scaling, after any averaging: the raw map over its peak
    assert np.allclose(maps, np.where(peak > 0, raw / np.where(peak > 0, peak, 1), 0), atol=1e-5)


def test_cam_target_is_the_log_odds_of_the_reported_probability_regression():
    # regression: maps targeted the raw class logit while predictions report the softmax probability
    from pneumolib.analysis.cam import LogitDifference

    out = torch.tensor([[0.3, 2.0], [1.5, -0.5]])
    p = torch.softmax(out, dim=1)
    for c in (0, 1):
        assert torch.allclose(LogitDifference(c)(out), torch.log(p[:, c] / (1 - p[:, c])), atol=1e-6)
        assert torch.allclose(LogitDifference(c)(out[0]), torch.log(p[0, c] / (1 - p[0, c])), atol=1e-6)


# --- scores ---------------------------------------------------------------------------------
def test_lung_focus_is_the_share_of_energy_inside_the_mask():
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    cam = np.zeros((8, 8))
    cam[:, :4] = 1.0
    assert lung_focus(cam, mask) == 1.0
    cam[:, 4:] = 1.0
    assert lung_focus(cam, mask) == pytest.approx(0.5)
    assert lung_focus(np.ones((2, 2)), np.ones((8, 8), bool)) == pytest.approx(1.0)  # resized to the mask


@pytest.mark.parametrize("seed", range(3))
def test_a_uniform_map_has_lift_exactly_one_for_lungs_and_heart_box(seed):
    lungs = make_phantom(np.random.default_rng(seed), pneumonia=False, size=64).lungs
    flat = np.ones((64, 64), np.float32)
    assert lift(flat, lungs) == 1.0
    assert lift(flat, heart_box_mask(64, 64)) == 1.0
    inside = lungs.astype(np.float32)  # all energy in the lungs: lift = 1 / area
    assert lift(inside, lungs) == pytest.approx(1 / lungs.mean())


def test_lower_central_share_of_a_uniform_map():
    assert lower_central_share(np.ones((100, 100))) == pytest.approx(0.45 * 0.4)


def test_patient_bootstrap_resamples_patients_not_images():
    # one patient with nine films of value 1, one with a single film of value 0: resampling patients can draw
    # the second patient twice (mean 0); resampling images practically never draws ten zeros
    values = np.array([1.0] * 9 + [0.0])
    lo, hi = patient_bootstrap(values, ["A"] * 9 + ["B"], n_boot=2000, seed=0)
    assert lo == 0.0 and hi == 1.0
    lo, hi = patient_bootstrap(values, [f"p{i}" for i in range(10)], n_boot=2000, seed=0)
    assert lo > 0.5


# --- lung masks -----------------------------------------------------------------------------
def test_the_shipped_check_is_calibrated_on_real_annotations_and_rejects_what_they_never_show():
    from pneumolib.data.lungs import LungSegmenter

    check = LungSegmenter.load().check
    assert 0.1 < check.min_area < check.max_area < 0.7  # the annotated lungs' area range, widened by 10%
    lungs = np.zeros((128, 128), bool)
    lungs[20:110, 12:58], lungs[20:110, 70:116] = True, True  # two lungs, 0.51 of the film
    assert check.problems(lungs) == ""
    one = lungs.copy()
    one[:, 64:] = False
    one[20:110, 58:62] = True  # one lung alone, as large as the area limit allows
    assert "component" in check.problems(one)


def test_lung_masks_are_annotated_where_a_film_has_one_else_learned(tmp_path):
    from pneumolib.analysis.cam import lung_mask
    from pneumolib.data.dataset import Sample
    from pneumolib.data.lungs import LungSegmenter, annotated_mask

    film = sorted((fixture_dir() / "test" / "NORMAL").glob("*.png"))[0]
    img = np.asarray(Image.open(film).convert("L"))
    s = Sample(film, 0, "p", "test")
    m, how, problem = lung_mask(s, img, annotated_mask)
    assert how == "annotated" and np.array_equal(m, np.asarray(Image.open(mask_for(film)).convert("L")) > 127)
    assert problem == ""  # an annotation is the reference, not checked
    m2, how2, _ = lung_mask(s, img, None, LungSegmenter.load())
    assert how2 == "learned" and m2.shape == img.shape
    # a user's folder with a sibling masks/ is not taken as annotations (regression: any masks/ folder was)
    user = tmp_path / "mine"
    for sub in ("test/NORMAL", "masks/test/NORMAL"):
        (user / sub).mkdir(parents=True)
    Image.fromarray(img).save(user / "test" / "NORMAL" / "a.png")
    Image.fromarray(img).save(user / "masks" / "test" / "NORMAL" / "a.png")
    assert annotated_mask(user / "test" / "NORMAL" / "a.png") is None
    # the shared data's layout: DATA/lung_masks beside DATA/chest_xray
    shared = tmp_path / "data"
    for sub in ("chest_xray/test/NORMAL", "lung_masks/test/NORMAL"):
        (shared / sub).mkdir(parents=True)
    (shared / "chest_xray" / "test" / "NORMAL" / "b.jpeg").write_bytes(b"x")
    Image.fromarray(img).save(shared / "lung_masks" / "test" / "NORMAL" / "b.png")
    assert (
        annotated_mask(shared / "chest_xray" / "test" / "NORMAL" / "b.jpeg")
        == shared / "lung_masks" / "test" / "NORMAL" / "b.png"
    )


# --- explain on the trained fixture model ---------------------------------------------------------
def test_explain_uses_annotated_fixture_masks_at_8x8_and_the_pneumonia_target(trained_run):
    e = trained_run.explanation
    assert set(e.mask_methods) == {"annotated"} and e.mask_ok.all()
    assert len(e.samples) == len(e.cams) == len(e.focus) == 24  # all 12 + 12 fixture test images
    assert e.target == "PNEUMONIA" and set(e.classes) == {1}
    assert min(e.map_size) >= 8 and e.layer == "layer2"  # 64 px: layer2 is the deepest stage with 8 x 8 cells
    s = e.summary()
    assert set(s) == {"NORMAL", "PNEUMONIA"}
    for v in s.values():
        assert v["masks_passed"] == 12 and v["masks_failed"] == 0
        lo, hi = v["lung_lift_ci95"]
        assert lo <= v["lung_lift"] <= hi
    assert e.selection.startswith("first 50 films per class")
    gc = trained_run.metrics["gradcam"]
    assert gc["map_size"] == list(e.map_size) and gc["randomisation_rank_corr"]["mean"] < 0.9


@pytest.mark.parametrize("size, layer", [(64, "layer2"), (128, "layer3"), (224, "layer3"), (256, "layer4")])
def test_auto_layer_is_the_deepest_with_at_least_8x8_cells(trained_run, size, layer):
    name, module = resolve_layer(trained_run.predictor.model, "auto", size, 3)
    assert name == layer and module == [getattr(trained_run.predictor.model, layer)[-1]]
    pre = replace(trained_run.predictor.preprocessing, image_size=size)
    e = explain(trained_run.predictor.model, trained_run.explanation.samples[:1], pre)
    assert min(e.map_size) >= 8


def test_pneumonia_map_puts_more_energy_on_the_lesions_than_a_random_map(trained_run):
    # judged against the spread of 200 seeded draws of random maps on the same films, not a fixed ratio: the
    # fixture's weights (and so the margin) change with the machine's thread count; chance does not
    e = trained_run.explanation
    pneu = [i for i, s in enumerate(e.samples) if s.label == 1]
    lesions = [np.asarray(Image.open(mask_for(e.samples[i].path, kind="lesions")).convert("L")) > 127 for i in pneu]
    model_share = np.mean([lung_focus(e.cams[i], m) for i, m in zip(pneu, lesions)])
    rand = random_maps(200 * len(pneu), e.map_size, e.input_size, seed=0).reshape(200, len(pneu), *e.cams.shape[1:])
    random_shares = [np.mean([lung_focus(c, m) for c, m in zip(draw, lesions)]) for draw in rand]
    assert model_share > np.max(random_shares)


def test_explain_without_maps_keeps_only_scores(trained_run):
    samples = trained_run.explanation.samples
    pre = trained_run.predictor.preprocessing
    full = explain(trained_run.predictor.model, samples, pre, 0.5)
    lean = explain(trained_run.predictor.model, samples, pre, 0.5, keep_maps=False, batch_size=5)
    assert lean.cams.shape[0] == 0 and lean.images.shape[0] == 0 and lean.masks.shape[0] == 0
    assert np.allclose(lean.focus, full.focus, atol=1e-5)
    assert np.allclose(lean.heart_lift, full.heart_lift, atol=1e-5)
    assert lean.summary().keys() == full.summary().keys()


def test_predicted_target_follows_the_threshold(trained_run):
    samples = trained_run.explanation.samples
    model, pre = trained_run.predictor.model, trained_run.predictor.preprocessing
    e = explain(model, samples, pre, 0.5, target="predicted")
    assert np.array_equal(e.classes, (e.probs >= 0.5).astype(int))
    assert set(explain(model, samples[:2], pre, target="NORMAL").classes) == {0}
    with pytest.raises(ValueError, match="target"):
        explain(model, samples[:2], pre, target="lungs")


def test_first_per_class_takes_the_first_films_in_order_and_says_so(fixture_data):
    test = fixture_data["test"]
    picked, words = first_per_class(test, 3)
    assert picked == [s for s in test if s.label == 0][:3] + [s for s in test if s.label == 1][:3]
    assert words.startswith("first 3 films per class")


# --- one prediction, one map: TTA ----------------------------------------------------------
def test_tta_explanation_uses_the_probabilities_predict_reports(trained_run):
    r = trained_run
    samples = r.explanation.samples
    tta_pred = Predictor(r.predictor.model, replace(r.config, tta=True), r.threshold, r.predictor.preprocessing)
    e = explain_predictor(tta_pred, samples, sanity_per_class=0, method="gradcam")
    scores = predict_samples(tta_pred.model, samples, tta_pred.preprocessing, tta=True)
    plain = predict_samples(tta_pred.model, samples, tta_pred.preprocessing, tta=False)
    assert e.tta and np.abs(scores.probs - plain.probs).max() > 1e-4  # TTA changes p on this model
    assert np.allclose(e.probs, scores.probs, atol=1e-5)
    # and the map is the mean of the image's map and its flip's map flipped back, averaged before the one scaling
    # (regression: each view's map was scaled to a peak of 1 before the average, weighting a weak view up)
    x = torch.stack([tta_pred.preprocess(s.path) for s in samples[:3]])
    with CAM(tta_pred.model, "gradcam", tta_pred.model.layer2[-1]) as cam:
        a = cam(x, class_targets([1, 1, 1]))
        b = cam(torch.flip(x, dims=[3]), class_targets([1, 1, 1]))[:, :, ::-1]
    mean = (a + b) / 2
    assert np.allclose(e.cams[:3], mean / mean.max(axis=(1, 2), keepdims=True), atol=1e-5)


# --- sanity and faithfulness --------------------------------------------------------------
def test_randomisation_lowers_the_rank_correlation_and_leaves_the_model_alone(trained_run):
    model = trained_run.predictor.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    e = trained_run.explanation
    x = torch.stack([trained_run.predictor.preprocess(s.path) for s in e.samples[:6]])
    maps = e.cams[:6]
    assert np.allclose(rank_correlation(maps, maps), 1.0)
    rand = randomise_top(model, ("layer4", "fc"), seed=1)
    with CAM(rand, "gradcam", rand.layer2[-1]) as cam:
        other = cam.maps(x, np.ones(6, int))
    assert np.nanmean(rank_correlation(maps, other)) < 0.9
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = randomise_top(model, ("layer4", "fc"), seed=1)
    assert torch.equal(again.fc.weight, rand.fc.weight) and torch.equal(
        again.layer2[0].conv1.weight, model.layer2[0].conv1.weight
    )


class _TopLeftTexture(nn.Module):
    """P(class 1) rises with the pixel spread in the top-left quadrant and ignores everything else."""

    def forward(self, x):
        s = x[:, :, :16, :16].flatten(1).std(dim=1)
        return torch.stack([torch.zeros_like(s), 40 * (s - 0.15)], dim=1)


def test_road_rewards_the_map_on_the_pixels_the_model_uses():
    model = _TopLeftTexture()
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    yy, xx = np.mgrid[0:32, 0:32]
    right = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 60.0).astype(np.float32)
    wrong = right[::-1, ::-1].copy()
    state = torch.get_rng_state()
    good = road(model, x, np.stack([right] * 4), [1] * 4, seed=0)
    bad = road(model, x, np.stack([wrong] * 4), [1] * 4, seed=0)
    assert torch.equal(state, torch.get_rng_state())  # the imputation noise comes from its own generator
    assert good["combined"].mean() > bad["combined"].mean() + 0.05
    again = road(model, x, np.stack([right] * 4), [1] * 4, seed=0)
    assert np.array_equal(good["combined"], again["combined"])


def test_sanity_checks_report_model_and_random_maps(trained_run):
    e = trained_run.explanation
    s = sanity_checks(
        trained_run.predictor.model, e, trained_run.predictor.preprocessing, per_class=1, percentiles=(50,)
    )
    assert s["n"] == 2 and len(s["randomisation_rank_corr"]["per_image"]) == 2
    fa = s["faithfulness"]
    assert "ROAD" in fa["metric"]
    # the reported numbers are ROAD's own on the chosen films: recomputed here with the same maps and seed
    idx = [next(i for i, smp in enumerate(e.samples) if smp.label == c) for c in (0, 1)]
    x = torch.stack([trained_run.predictor.preprocess(e.samples[i].path) for i in idx])
    direct = road(trained_run.predictor.model, x, e.cams[idx], e.classes[idx], tta=e.tta, percentiles=(50,), seed=0)
    assert fa["model"] == pytest.approx(float(np.mean(direct["combined"])), abs=1e-6)
    assert fa["model_morf"] == pytest.approx(float(np.mean(direct["morf"])), abs=1e-6)


# --- command line ---------------------------------------------------------------------------
def test_explain_cli_writes_grids_and_json_matching_the_scores_csv(trained_run, tmp_path, capsys):
    r = trained_run
    ckpt = save_checkpoint(
        tmp_path / "tta" / "checkpoint.pt", r.predictor.model, replace(r.config, tta=True), r.threshold
    )
    js, out, scores = tmp_path / "g.json", tmp_path / "figs", tmp_path / "scores.csv"
    assert (
        main(
            [
                "explain",
                str(ckpt),
                "--data-dir",
                str(fixture_dir()),
                "--n",
                "3",
                "--json",
                str(js),
                "--out",
                str(out),
                "--sanity-n",
                "1",
            ]
        )
        == 0
    )
    rep = json.loads(js.read_text())
    for key in (
        "map_size",
        "lung_lift",
        "heart_lift",
        "masks_passed",
        "masks_failed",
        "randomisation_rank_corr",
        "road",
        "method",
        "layer",
        "empty_maps",
        "mask_source",
        "maps_pass",
        "learned_mask_cost",
        "selection",
        "target",
    ):
        assert key in rep, key
    assert min(rep["map_size"]) >= 8 and rep["target"] == "PNEUMONIA" and rep["tta"] is True
    assert set(rep["lung_lift"]) == {"NORMAL", "PNEUMONIA"} and len(rep["lung_lift"]["NORMAL"]["ci95"]) == 2
    assert {"model", "random", "model_minus_random_ci95"} <= set(rep["road"]) and rep["masks_passed"] + rep[
        "masks_failed"
    ] == 6
    assert rep["selection"].startswith("first 3 films per class")
    assert len(list(out.glob("*.png"))) == 2
    assert "lung lift" in capsys.readouterr().out
    assert main(["evaluate", str(ckpt), "--data-dir", str(fixture_dir()), "--scores", str(scores)]) == 0
    csv_p = {row["path"]: float(row["p_pneumonia"]) for row in csv.DictReader(scores.open())}
    for img in rep["images"]:
        assert img["p_pneumonia"] == pytest.approx(csv_p[img["path"]], abs=1e-5)
        assert img["prediction"] == ("PNEUMONIA" if img["p_pneumonia"] >= rep["threshold"] else "NORMAL")


@pytest.mark.parametrize("size, expected", [((300, 200), (300, 200)), ((2000, 1500), (1024, 768))])
def test_predict_cam_overlays_keep_the_film_size_up_to_1024(trained_run, tmp_path, size, expected):
    src = min((fixture_dir() / "test" / "PNEUMONIA").glob("*.png"))
    film = tmp_path / "film.png"
    Image.open(src).convert("L").resize(size, Image.BILINEAR).save(film)
    assert (
        main(["predict", str(trained_run.run_dir / "checkpoint.pt"), str(film), "--cam-dir", str(tmp_path / "cams")])
        == 0
    )
    with Image.open(tmp_path / "cams" / "film_cam.png") as im:
        assert im.size == expected and im.mode == "RGB"


def test_empty_maps_and_failed_masks_are_counted_and_left_out(fixture_data):
    from pneumolib.analysis.cam import Explanation

    samples = [s for s in fixture_data["test"] if s.label == 1][:4]
    nan = float("nan")
    e = Explanation(
        samples,
        np.zeros((0, 64, 64), np.uint8),
        np.zeros((0, 64, 64)),
        np.full(4, 0.9),
        0.5,
        np.zeros((0, 64, 64), bool),
        ["learned"] * 4,
        focus=np.array([0.4, nan, 0.2, 0.6]),
        lung_area=np.full(4, 0.2),
        heart_box=np.array([0.18, nan, 0.36, 0.18]),
        method="gradcam",
        target="PNEUMONIA",
        classes=np.ones(4, int),
        mask_problems=["", "", "", "area 0.01 outside"],
        input_size=64,
    )
    s = e.summary()["PNEUMONIA"]
    assert s["empty_maps"] == 1 and s["masks_failed"] == 1 and s["masks_passed"] == 3
    assert s["lung_lift"] == pytest.approx((2.0 + 1.0) / 2)  # the empty map and the failed mask are left out
    rep = e.report()
    assert rep["empty_maps"] == 1 and rep["lung_lift"]["PNEUMONIA"]["n"] == 2
    assert rep["images"][1]["lung_lift"] is None and rep["images"][1]["heart_lift"] is None
    from pneumolib.analysis.cam import format_report

    assert "1 of 4 maps are empty" in format_report(rep) and "method 'hirescam'" in format_report(rep)
    # regression: a HiResCAM report with an empty map advised switching to HiResCAM
    assert "method 'hirescam'" not in format_report({**rep, "method": "hirescam"})


def test_an_empty_map_is_not_drawn_as_a_finding(fixture_data):
    import matplotlib

    matplotlib.use("Agg")
    from pneumolib.analysis import plots
    from pneumolib.analysis.cam import Explanation

    samples = [s for s in fixture_data["test"] if s.label == 1][:2]
    cams = np.stack([np.zeros((64, 64), np.float32), np.full((64, 64), 0.5, np.float32)])
    e = Explanation(
        samples,
        np.full((2, 64, 64), 100, np.uint8),
        cams,
        np.full(2, 0.9),
        0.5,
        np.zeros((2, 64, 64), bool),
        ["learned"] * 2,
        focus=np.array([float("nan"), 0.3]),
        lung_area=np.full(2, 0.2),
        heart_box=np.array([float("nan"), 0.18]),
        method="gradcam",
        target="PNEUMONIA",
        classes=np.ones(2, int),
        input_size=64,
        map_size=(8, 8),
    )
    fig = plots.plot_cam_grid(e, n_per_class=2)
    empty_ax, full_ax = fig.axes[0], fig.axes[1]
    assert len(empty_ax.images) == 1 and "EMPTY MAP" in empty_ax.get_title()  # the film only, said so
    assert len(full_ax.images) == 2  # film and heat map
    assert "1 empty map(s) not drawn" in plots.cam_caption(e)


def test_explain_checks_learned_masks_when_no_annotated_mask_exists(trained_run, tmp_path):
    import shutil

    from pneumolib.data.dataset import discover_split

    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "test" / cls).mkdir(parents=True)
        for src in sorted((fixture_dir() / "test" / cls).glob("*.png"))[:3]:
            shutil.copy(src, tmp_path / "test" / cls / src.name)
    samples = discover_split(tmp_path, "test")["test"]
    e = explain(trained_run.predictor.model, samples, trained_run.predictor.preprocessing)
    assert set(e.mask_methods) == {"learned"}
    rep = e.report()
    assert rep["masks_passed"] + rep["masks_failed"] == 6
    assert [bool(i["mask_problem"]) for i in rep["images"]] == [not ok for ok in e.mask_ok]


def test_method_comparison_on_the_fixture_picks_maps_that_pass_and_sit_on_the_lesions(trained_run, capsys):
    # the fixture knows where the opacities are: the method the comparison keeps must put more of its map on them
    # than the methods whose maps fail their checks
    from pneumolib.analysis.cam import choose_method, compare_methods, format_comparison
    from pneumolib.data.lungs import annotated_mask

    pred, test = trained_run.predictor, trained_run.data["test"]
    methods = ("gradcam", "hirescam", "gradcam++")
    rows = compare_methods(
        pred, test, methods=methods, layers=("layer2",), n_per_class=12, sanity_per_class=6, exact_masks=annotated_mask
    )
    assert [r["method"] for r in rows] == list(methods) and all(r["layer"] == "layer2" for r in rows)
    best = choose_method(rows)
    assert best is not None and best["maps_pass"]
    pneu = [s for s in test if s.label == 1]

    def lesion_lift(method):
        e = explain_predictor(pred, pneu, sanity_per_class=0, method=method, layer="layer2")
        lesions = [
            np.asarray(Image.open(mask_for(s.path, kind="lesions")).convert("L").resize((64, 64))) > 127
            for s in e.samples
        ]
        return np.nanmean(
            [(c * m).sum() / c.sum() / m.mean() if c.sum() > 0 else np.nan for c, m in zip(e.cams, lesions)]
        )

    failing = [r["method"] for r in rows if not r["maps_pass"]]
    assert all(lesion_lift(best["method"]) > lesion_lift(m) for m in failing)
    assert lesion_lift(best["method"]) > 1.0  # more of the map on the lesions than their area
    table = format_comparison(rows)
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + 3  # the header and one row per method
    assert f"choice: {best['method']} at layer2" in table
    assert choose_method([dict(r, maps_pass=False) for r in rows]) is None


def test_learned_mask_cost_is_the_lift_difference_on_films_with_both_masks():
    """Issue 21: a reader sees what the learned masks cost against the annotations, with an interval by patient."""
    from pneumolib.analysis.cam import Explanation
    from pneumolib.data.dataset import Sample

    samples = [Sample(f"f{i}", i % 2, f"p{i}", "test") for i in range(8)]
    focus = np.full(8, 0.5)
    area = np.full(8, 0.25)  # annotated lift = 2.0
    methods = ["annotated"] * 6 + ["learned"] * 2
    learned = np.array([1.5, 1.5, 1.5, 1.5, np.nan, 1.5, np.nan, np.nan])  # film 4: its learned mask failed
    e = Explanation(
        samples,
        np.zeros((0, 4, 4)),
        np.zeros((0, 4, 4)),
        np.full(8, 0.5),
        0.5,
        np.zeros((0, 4, 4)),
        methods,
        focus,
        area,
        np.full(8, 0.1),
        "hirescam",
        "PNEUMONIA",
        learned_lift=learned,
    )
    cost = e.report(per_image=False)["learned_mask_cost"]
    assert cost["NORMAL"]["n"] == 2 and cost["PNEUMONIA"]["n"] == 3  # NORMAL: films 0, 2 (4 failed); PNEUMONIA: 1, 3, 5
    assert cost["PNEUMONIA"]["learned_minus_annotated"] == pytest.approx(-0.5)
    assert cost["PNEUMONIA"]["annotated"] == pytest.approx(2.0) and cost["PNEUMONIA"]["learned"] == pytest.approx(1.5)
    assert cost["NORMAL"]["ci95"] == pytest.approx([-0.5, -0.5])


def test_regression_a_collapsed_models_road_of_zero_is_cannot_check_never_a_pass():
    """Regression (series render, 03 seed 1 and 06): a model calling every film PNEUMONIA at p = 1.00 gave ROAD
    'model - random map 0.000 [0.000, 0.000]', printed as a pass."""
    import numpy as np

    from pneumolib.analysis.cam_checks import _faithfulness_record, maps_pass
    from pneumolib.notebook.display import maps_checked

    flat = {k: np.full(8, 1e-9) for k in ("combined", "morf", "lerf")}
    fa = _faithfulness_record(flat, flat, (20, 40), (8, 8), 0, [f"p{i}" for i in range(8)])
    sanity = {
        "faithfulness": dict(fa, model_minus_random_ci95=[1e-12, 2e-12]),
        "randomisation_rank_corr": {"mean": 0.1},
        "n": 8,
    }
    assert fa["degenerate"] and maps_pass(sanity) is None
    assert maps_checked(sanity).startswith("cannot check")
    moving = {k: np.linspace(0.1, 0.3, 8) for k in ("combined", "morf", "lerf")}
    still = {k: np.zeros(8) for k in ("combined", "morf", "lerf")}
    fa2 = _faithfulness_record(moving, still, (20, 40), (8, 8), 0, [f"p{i}" for i in range(8)])
    assert not fa2["degenerate"] and maps_pass({"faithfulness": fa2, "randomisation_rank_corr": {"mean": 0.1}}) is True
    # a nearly collapsed model: the films' scores move by a hair (not 'degenerate'), so ROAD barely moves for either
    # map and its difference rounds to '0.000 [0.000, 0.000]': cannot check, never a pass on a rounding artefact
    hair = {k: np.linspace(1e-5, 3e-4, 8) for k in ("combined", "morf", "lerf")}
    fa3 = _faithfulness_record(hair, still, (20, 40), (8, 8), 0, [f"p{i}" for i in range(8)])
    checks = {"faithfulness": fa3, "randomisation_rank_corr": {"mean": 0.1}, "n": 8}
    assert not fa3["degenerate"] and fa3["model_minus_random_ci95"][0] > 0
    assert maps_pass(checks) is None and maps_checked(checks).startswith("cannot check")
    from pneumolib.analysis.cam import _check_lines
    from pneumolib.studies.verdict_flags import maps_faithful

    assert any("cannot be checked" in line for line in _check_lines({"road": fa3, "maps_pass": None}))
    old_record = {"gradcam": {"road": fa3, "maps_pass": True}}  # recorded before this rule: said 'pass'
    assert maps_faithful(old_record) is None
    # a model whose output moves, with a map better than random by less than ROAD prints: a FAIL, not a pass
    tiny = dict(fa2, model_minus_random=2e-4, model_minus_random_ci95=[1e-6, 3e-4])
    assert maps_pass({"faithfulness": tiny, "randomisation_rank_corr": {"mean": 0.1}}) is False
    clear = dict(fa2, model_minus_random=0.004, model_minus_random_ci95=[0.001, 0.008])  # small, but resolved
    assert maps_pass({"faithfulness": clear, "randomisation_rank_corr": {"mean": 0.1}}) is True
