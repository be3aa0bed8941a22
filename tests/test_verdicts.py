"""Verdict rules on synthetic numbers: intervals against thresholds, seeds, comparisons, untestable claims."""

import pytest

from pneumolib.core.stats import wilson
from pneumolib.studies import verdicts as V
from pneumolib.studies.catalogue import REGISTRY
from pneumolib.studies.verdicts import CANNOT_TELL, FAILS, HOLDS, NOT_TESTED, SEEDS_DISAGREE, TOO_FEW_FILMS, Estimate  # noqa: F401


def run(
    seed=0, sens=0.95, spec=0.95, acc=0.95, half=0.03, n=400, focus=None, weights="random init", maps_pass=True, **extra
):
    """A run's metrics as run_experiment writes them, with bootstrap intervals of +-half."""

    def ci(v):
        return [v - half, v + half]

    m = {
        "config": {"seed": seed, "pretrained": "unavailable" not in weights},
        "weights": weights,
        "test": {
            "accuracy": acc,
            "sensitivity": sens,
            "specificity": spec,
            "auc": 0.99,
            "n": n,
            "ci95": {"accuracy": ci(acc), "sensitivity": ci(sens), "specificity": ci(spec)},
            "p_shares": {"p>=0.99": 0.1, "0.4<=p<=0.7": 0.05, "extreme (p<0.05 or p>0.95)": 0.7},
            "confusion_matrix": [[90, 10], [15, 285]],
        },
    }
    if focus is not None:
        m["lung_focus"] = {c: {"lung_lift": focus, "heart_lift": 1.0, "n": 50} for c in ("NORMAL", "PNEUMONIA")}
    m["gradcam"] = {"maps_pass": maps_pass, "target": "PNEUMONIA"}
    m.update(extra)
    return m


@pytest.mark.parametrize(
    "interval, direction, expected",
    [
        ((0.92, 0.97), ">", HOLDS),
        ((0.80, 0.89), ">", FAILS),
        ((0.85, 0.95), ">", CANNOT_TELL),
        ((0.70, 0.79), "<", HOLDS),
        ((0.91, 0.99), "<", FAILS),
        ((0.75, 0.85), "<", CANNOT_TELL),
        ((0.80, 0.90), ">", FAILS),  # touching the threshold from below is not above it
        (None, ">", CANNOT_TELL),
        ((float("nan"), 0.9), ">", CANNOT_TELL),
    ],
)
def test_verdict_compares_the_whole_interval_with_the_threshold(interval, direction, expected):
    assert V.verdict(interval, direction, 0.9 if direction == ">" else 0.8) == expected


def test_verdict_refuses_an_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        V.verdict((0.1, 0.2), ">=", 0.5)


def test_interval_is_the_envelope_of_seed_intervals_or_the_seed_range_with_enough_seeds():
    c = V.combine([Estimate(0.90, 0.85, 0.94), Estimate(0.96, 0.93, 0.99)])
    assert c["interval"] == (0.85, 0.99) and c["range"] == (0.90, 0.96) and c["mean"] == pytest.approx(0.93)
    assert V.combine([Estimate(1.2)])["interval"] is None  # one seed, no sampling interval: no verdict
    three = V.combine([Estimate(1.2), Estimate(1.1), Estimate(1.3)])
    assert three["interval"] == (1.1, 1.3) and three["n"] == 3


def test_differences_add_half_widths_in_quadrature_and_gaps_stay_conservative():
    d = Estimate(0.95, 0.92, 0.98) - Estimate(0.80, 0.72, 0.87)
    h = (0.03**2 + 0.075**2) ** 0.5
    assert (d.value, d.lo, d.hi) == pytest.approx((0.15, 0.15 - h, 0.15 + h))
    a = abs(Estimate(0.01, -0.05, 0.03))
    assert (a.value, a.lo, a.hi) == pytest.approx((0.01, 0.0, 0.05))
    assert abs(Estimate(-0.2, -0.3, -0.1)).lo == pytest.approx(0.1)
    assert (Estimate(1.0) - Estimate(0.5)).has_interval is False


def test_wilson_interval_of_all_right_and_all_wrong_small_samples():
    lo, hi = wilson(5, 5)
    assert hi == 1.0 and 0.5 < lo < 0.6
    lo, hi = wilson(0, 5)
    assert lo == 0.0 and 0.4 < hi < 0.5


def test_a_baseline_with_balanced_recalls_contradicts_normal_images_ambiguous():
    rows = {r["claim"]: r for r in V.judge_entry("01", [run(spec=0.955, sens=0.96, focus=1.2)])}
    assert rows["Pneumonia classified well"]["verdict"] == HOLDS
    assert rows["normal images ambiguous"]["verdict"] == FAILS
    # Grad-CAM shares carry no sampling interval: one seed cannot decide ...
    cam = "Grad-CAM: attention on the image periphery rather than the lung centre"
    assert rows[cam]["verdict"] == CANNOT_TELL and "3 or more seeds" in rows[cam]["note"]
    # ... three seeds can, from their range: lifts above 1 everywhere contradict "not on the lung centre"
    rows = {r["claim"]: r for r in V.judge_entry("01", [run(seed=s, focus=f) for s, f in enumerate((1.3, 1.4, 1.5))])}
    assert rows[cam]["verdict"] == FAILS and rows[cam]["n"] == 3  # mean 1.40, t over 3 seeds: (1.15, 1.65)
    rows = {r["claim"]: r for r in V.judge_entry("01", [run(seed=s, focus=f) for s, f in enumerate((1.1, 1.2, 1.3))])}
    assert rows[cam]["verdict"] == CANNOT_TELL  # mean 1.20, t over 3 seeds: (0.95, 1.45) holds 1
    rows = {r["claim"]: r for r in V.judge_entry("01", [run(seed=s, focus=f) for s, f in enumerate((0.5, 0.6, 0.7))])}
    assert rows[cam]["verdict"] == HOLDS


def test_verdicts_use_every_seed():
    good, bad = run(seed=0, sens=0.97), run(seed=1, sens=0.86)
    row = V.judge(V.CLAIMS["01"][0], [good, bad])
    assert row["verdict"] == CANNOT_TELL and row["range"] == (0.86, 0.97) and row["per_seed"] == (0.97, 0.86)
    assert "seeds" in row["note"] and "would decide it" in row["note"]
    assert V.judge(V.CLAIMS["01"][0], [good])["verdict"] == HOLDS


@pytest.mark.parametrize(
    "seeds, expected",
    [
        ([(0.95, 0.92, 0.98), (0.96, 0.93, 0.99)], HOLDS),  # every seed's interval above 0.9
        ([(0.80, 0.75, 0.85), (0.84, 0.80, 0.88)], FAILS),  # every one below
        ([(0.95, 0.92, 0.98), (0.84, 0.80, 0.88)], SEEDS_DISAGREE),  # each seed decided, in opposite ways
        ([(0.95, 0.92, 0.98), (0.91, 0.85, 0.97)], TOO_FEW_FILMS),  # one seed's own interval straddles 0.9
        ([(0.91, 0.85, 0.97)] * 3, TOO_FEW_FILMS),
        ([(0.95, None, None), (0.93, None, None), (0.97, None, None)], HOLDS),  # no intervals: the range of 3 seeds
        ([(0.95, None, None), (0.85, None, None), (0.97, None, None)], SEEDS_DISAGREE),
        ([(0.95, None, None), (0.97, None, None)], CANNOT_TELL),  # no intervals and too few seeds
    ],
)
def test_decide_tells_seeds_that_disagree_from_films_too_few_to_decide(seeds, expected):
    verdict, why = V.decide([Estimate(*s) for s in seeds], ">", 0.9)
    assert verdict == expected
    assert bool(why) == (verdict not in (HOLDS, FAILS))


def test_seeds_trained_at_different_budgets_are_not_pooled_into_one_verdict():
    a, b = run(seed=0), run(seed=1)
    a["config"].update(epochs=6, max_train_images=2000, image_size=128)
    b["config"].update(epochs=3, max_train_images=1500, image_size=128)
    row = V.judge(V.CLAIMS["01"][0], [a, b])
    assert row["verdict"] == NOT_TESTED and "different budgets" in row["note"] and "3x1500" in row["note"]
    b["config"].update(epochs=6, max_train_images=2000)
    assert V.judge(V.CLAIMS["01"][0], [a, b])["verdict"] == HOLDS


def test_a_run_that_did_not_learn_is_flagged_in_the_verdict():
    a, b = run(seed=0, best_epoch=4, val={"auc": 0.95}), run(seed=1, best_epoch=3, val={"auc": 0.55})
    for m in (a, b):
        m["config"]["epochs"] = 6
    row = V.judge(V.CLAIMS["01"][0], [a, b])
    assert row["verdict"] == f"{HOLDS} ({V.UNTRAINED})" and "seed(s) 1 did not learn" in row["note"]
    assert V.judge(V.CLAIMS["01"][0], [a])["verdict"] == HOLDS


def test_regression_a_kept_first_epoch_that_learned_is_not_untrained():
    """Regression (09 cell 12): "EPOCH 1: untrained" was printed beside a test AUC of 0.970: the kept epoch's number
    decided it. Validation evidence decides it now."""
    learned = run(seed=0, best_epoch=1, val={"auc": 0.97})
    learned["config"]["epochs"] = 6
    assert not V.untrained(learned)
    assert V.judge(V.CLAIMS["01"][0], [learned])["verdict"] == HOLDS
    assert V.untrained(dict(learned, val={"auc": 0.6}))


def test_regression_a_collapsed_seed_that_ranks_well_is_collapsed_at_its_cut_not_untrained():
    """Regression (entry 02 seed 4: validation AUC 0.901, 110 of 111 NORMAL and all 354 PNEUMONIA validation films
    called PNEUMONIA): collapse alone made the seed 'untrained', so '(UNTRAINED)' stood beside AUC >= 0.9. It ranks;
    its cut failed: flagged as collapsed, never as untrained."""
    from pneumolib.notebook.seed_views import seed_table

    ranks = run(seed=4, best_epoch=1, val={"auc": 0.9006, "confusion_matrix": [[1, 110], [0, 354]]})
    ranks["config"]["epochs"] = 6
    assert V.collapsed(ranks) and not V.untrained(ranks)
    row = V.judge(V.CLAIMS["01"][0], [ranks])
    assert V.COLLAPSED in row["flags"] and V.UNTRAINED not in row["flags"]
    assert "did not learn" not in row["note"] and "seed 4 calls 100% of validation films PNEUMONIA" in row["note"]
    ranks.update(threshold=0.5, test=dict(ranks["test"], ci95={}))
    table = seed_table([ranks])
    assert "UNTRAINED" not in table.loc["seed 4", "kept epoch"]
    assert table.loc["seed 4", "collapsed?"].startswith("COLLAPSED at its cut: calls 100%")
    chance = dict(ranks, val={"auc": 0.52, "confusion_matrix": [[1, 110], [0, 354]]})  # collapsed and untrained
    assert V.untrained(chance) and set(V.judge(V.CLAIMS["01"][0], [chance])["flags"]) >= {V.UNTRAINED, V.COLLAPSED}


def test_comparisons_pair_runs_of_the_same_seed():
    this = [run(seed=0, spec=0.40), run(seed=1, spec=0.45)]
    ref = {"01": [run(seed=1, spec=0.95), run(seed=0, spec=0.60)]}
    row = V.judge(V.CLAIMS["02"][0], this, ref)
    assert row["range"] == pytest.approx((-0.50, -0.20))  # 0.40-0.60 and 0.45-0.95, not 0.40-0.95
    assert row["per_seed"] == pytest.approx((-0.20, -0.50))


def test_paired_by_seed_pairs_same_seeds_and_leaves_out_a_seed_the_other_entry_lacks():
    this = [run(seed=2, spec=0.5), run(seed=0, spec=0.4)]
    base = [run(seed=0, spec=0.6), run(seed=1, spec=0.9)]
    pairs = V.paired_by_seed(this, base)
    assert [(m["config"]["seed"], b["config"]["seed"]) for m, b in pairs] == [(0, 0)]
    assert pairs[0][1]["test"]["specificity"] == 0.6


def test_a_comparison_without_the_other_run_is_not_tested():
    row = V.judge(V.CLAIMS["02"][0], [run()], {})
    assert row["verdict"] == NOT_TESTED and "entry 01" in row["note"]


def test_claims_about_imagenet_weights_are_not_tested_on_random_init():
    ref = {"04": [run(spec=0.80)]}
    claim = next(c for c in V.CLAIMS["05"] if c.label == "NORMAL recall against entry 04")
    row = V.judge(claim, [run(spec=0.95, weights="random init (ImageNet weights unavailable)")], ref)
    assert row["verdict"] == f"{NOT_TESTED} ({V.RANDOM_INIT})" and "random init" in row["note"]
    row = V.judge(claim, [run(spec=0.95, weights="ImageNet weights from resnet18.pth")], ref)
    assert row["verdict"] == HOLDS


def test_one_normal_film_called_normal_falsifies_everything_pneumonia():
    # regression: 08 said 'cannot tell' although every seed got 2-4 of its 5 NORMAL films right
    def subset(seed, k_normal_right):
        return run(seed=seed, test_subset={"n": 10, "confusion_matrix": [[k_normal_right, 5 - k_normal_right], [0, 5]]})

    claim = V.CLAIMS["08"][0]
    assert V.judge(claim, [subset(0, 0)])["verdict"] == HOLDS  # 0 of 5 NORMAL right: everything PNEUMONIA
    assert V.judge(claim, [subset(s, k) for s, k in enumerate((2, 4, 3))])["verdict"] == FAILS
    assert V.judge(claim, [subset(0, 0), subset(1, 2)])["verdict"] == SEEDS_DISAGREE


def test_over_confidence_counts_normal_films_at_p_099_not_every_film():
    # regression: 73% of test films are PNEUMONIA, so "share of all films at p >= 0.99" passed a good model
    m = run()
    m["test"]["p_shares"]["p>=0.99"] = 0.7
    m["test"]["p_shares_by_class"] = {"NORMAL": {"p>=0.99": 0.02}, "PNEUMONIA": {"p>=0.99": 0.95}}
    m["test"]["n_by_class"] = {"NORMAL": 100, "PNEUMONIA": 300}
    assert V.judge(V.CLAIMS["02"][1], [m])["verdict"] == FAILS
    m["test"]["p_shares_by_class"]["NORMAL"]["p>=0.99"] = 0.8
    assert V.judge(V.CLAIMS["02"][1], [m])["verdict"] == HOLDS


def test_most_stable_is_a_spread_over_seeds_decided_with_five_seeds_or_more():
    def runs(accs):
        return [run(seed=i, acc=a) for i, a in enumerate(accs)]

    steady, wild = [0.90, 0.91, 0.90, 0.91, 0.905], [0.70, 0.92, 0.80, 0.95, 0.60]
    claim = next(c for c in V.CLAIMS["06"] if c.across_seeds is not None)
    row = V.judge(claim, runs(wild), {"01": runs(steady)})
    assert row["verdict"] == HOLDS and row["interval"][0] > 0
    assert V.judge(claim, runs(steady), {"01": runs(wild)})["verdict"] == FAILS
    row = V.judge(claim, runs(wild[:3]), {"01": runs(steady[:3])})
    assert row["verdict"] == CANNOT_TELL and "5 or more seeds" in row["note"]


def test_the_cohort_claim_is_judged_by_a_recorded_measurement_of_the_same_training_config():
    from dataclasses import asdict, replace

    from pneumolib.core.config import apply_profile
    from pneumolib.studies.catalogue import RECOMMENDED

    cfg = asdict(replace(apply_profile(RECOMMENDED, "cpu"), seed=0))
    this = [run(seed=s, config=dict(cfg, seed=s)) for s in (0, 1, 2)]
    claim = next(c for c in V.CLAIMS["10"] if V.COHORT in c.needs)  # the present training config's row

    def record(spec, config):
        return [{"commit": "abc1234", "config": config, "cohort_specificity": spec, "n_normal": 234}]

    for spec, expected in ((0.679, FAILS), (0.97, HOLDS), (0.90, CANNOT_TELL)):
        refs = V.cohort_references(record(spec, cfg), this)
        row = V.judge(claim, this, {V.COHORT: refs})
        assert row["verdict"] == expected and row["n"] == 1 and "seed(s) 0 of 3" in row["note"]
    other = dict(cfg, crop="none")  # another recipe's measurement says nothing about this one
    assert V.cohort_references(record(0.88, other), this) == []
    row = V.judge(claim, this, {V.COHORT: []})
    assert row["verdict"] == NOT_TESTED and "no measurement of this training config" in row["note"]


def test_the_committed_record_holds_no_measurement_of_the_present_recipe():
    import json
    from dataclasses import asdict, replace
    from pathlib import Path

    from pneumolib.core.config import apply_profile
    from pneumolib.studies.catalogue import RECOMMENDED

    recipes = json.loads((Path(__file__).parents[1] / "docs" / "external_cohort" / "recipes.json").read_text())
    runs = [{"config": asdict(replace(apply_profile(RECOMMENDED, "cpu"), seed=s))} for s in (0, 1, 2)]
    assert V.cohort_references(recipes["recipes"], runs) == []  # the ensemble came after the last measurement


def test_missing_measurements_are_said_not_guessed():
    row = V.judge(V.CLAIMS["04"][0], [run()])
    assert row["verdict"] == NOT_TESTED and "inference_paths" in row["note"]


def test_the_log_path_claims_of_entry_4_read_the_inference_rows():
    # R = G = B films: the log's path gives the checkpoint's predictions, none changed
    row = {
        "NORMAL recall": 0.8,
        "share predicted PNEUMONIA": 0.77,
        "share of predictions changed": 0.0,
        "n": 400,
        "n_normal": 100,
    }
    paths = {V.CHECKPOINT_PATH: row, V.LOG_PATH: row}
    rows = V.judge_entry("04", [run(inference_paths=paths)])
    # the log's path: 77% called PNEUMONIA, not every film; it changes no prediction, so it is not the cause; no
    # baseline loaded, no ImageNet row, no Grad-CAM here
    assert [r["verdict"] for r in rows] == [FAILS, NOT_TESTED, FAILS, NOT_TESTED, NOT_TESTED]
    assert "entry 01" in rows[1]["note"] and V.IMAGENET_PATH in rows[3]["note"]
    paths[V.IMAGENET_PATH] = dict(row, **{"share of predictions changed": 0.4})
    assert V.judge_entry("04", [run(inference_paths=paths)])[3]["verdict"] == HOLDS


def test_every_experiment_has_claims_with_quotes_and_a_direction():
    assert set(V.CLAIMS) == {c.entry for c in REGISTRY.values()}
    for entry, claims in V.CLAIMS.items():
        assert claims
        for c in claims:
            assert c.entry == entry and c.quote and c.quantity and c.direction in "<>"


def _p(rows) -> int:
    """Index of entry 09's PNEUMONIA-target heart-lift row (its lung-lift row follows): after the NORMAL-target pair."""
    return next(i for i, r in enumerate(rows) if r["claim"].startswith("Grad-CAM")) + 2


def test_grad_cam_lifts_with_patient_intervals_decide_with_one_seed():
    lf = {
        c: {"lung_lift": 0.8, "lung_lift_ci95": [0.7, 0.9], "heart_lift": 2.0, "heart_lift_ci95": [1.7, 2.4]}
        for c in ("NORMAL", "PNEUMONIA")
    }
    rows = V.judge_entry("09", [run(lung_focus=lf)])
    g = next(
        i for i, r in enumerate(rows) if r["claim"].startswith("Grad-CAM")
    )  # the NORMAL-target rows, then PNEUMONIA's
    assert [r["verdict"] for r in rows[g + 2 : g + 4]] == [HOLDS, HOLDS]  # heart lift above 1, lung lift below 1
    assert rows[g + 3]["interval"] == pytest.approx((0.7, 0.9))
    # the claim is about a NORMAL film: NORMAL-target maps are not recorded, and the row says what must be
    assert rows[g]["verdict"] == NOT_TESTED and rows[g]["note"].startswith("not recorded: re-run the entry")
    both = {"NORMAL": lf, "PNEUMONIA": lf}
    checked = {"NORMAL": {"maps_pass": True}}  # the NORMAL-target maps' own checks, which their rows are judged by
    rows = V.judge_entry("09", [run(lung_focus=lf, lung_focus_by_target=both, gradcam_by_target=checked)])
    assert [r["verdict"] for r in rows[g : g + 4]] == [HOLDS] * 4


@pytest.mark.parametrize(
    "lung, heart, expected",
    [
        ((0.7, 0.9), (1.7, 2.4), (HOLDS, HOLDS)),
        ((1.1, 1.3), (0.6, 0.9), (FAILS, FAILS)),  # the maps sit on the lungs, off the heart box
        (
            (0.9, 1.2),
            (0.9, 1.3),
            (CANNOT_TELL, CANNOT_TELL),
        ),  # an interval that holds 1 (a uniform map) decides nothing
    ],
)
def test_grad_cam_claims_hold_fail_or_cannot_tell_by_where_the_lift_interval_lies_against_1(lung, heart, expected):
    # regression: "lung lift < 1.5" passed almost any map (01: 1.21 'held' as attention on the periphery)
    lf = {
        c: {
            "lung_lift": sum(lung) / 2,
            "lung_lift_ci95": list(lung),
            "heart_lift": sum(heart) / 2,
            "heart_lift_ci95": list(heart),
        }
        for c in ("NORMAL", "PNEUMONIA")
    }
    rows = V.judge_entry("09", [run(lung_focus=lf)])
    assert (rows[_p(rows)]["verdict"], rows[_p(rows) + 1]["verdict"]) == expected


def test_grad_cam_claims_are_not_judged_on_maps_that_fail_their_checks():
    lf = {
        c: {"lung_lift": 0.8, "lung_lift_ci95": [0.7, 0.9], "heart_lift": 2.0, "heart_lift_ci95": [1.7, 2.4]}
        for c in ("NORMAL", "PNEUMONIA")
    }
    rows = V.judge_entry("09", [run(lung_focus=lf, maps_pass=False)])
    p = _p(rows)
    assert (
        rows[p]["verdict"] == rows[p + 1]["verdict"] == V.MAPS_NOT_FAITHFUL and "fail their checks" in rows[p]["note"]
    )
    assert rows[0]["verdict"] != V.MAPS_NOT_FAITHFUL  # a claim about predictions is judged whatever the maps
    rows = V.judge_entry("09", [run(lung_focus=lf, maps_pass=None)])
    assert rows[p]["verdict"] == NOT_TESTED and "not run" in rows[p]["note"]
    # a comparison is judged only when the paired entry's maps pass too
    this, ref = run(focus=1.3), run(focus=1.0, maps_pass=False)
    row = V.judge(V.CLAIMS["03"][0], [this], {"01": [ref]})
    assert row["verdict"] == V.MAPS_NOT_FAITHFUL


def test_regression_maps_over_a_constant_output_are_said_cannot_check_not_checks_not_run():
    """Regression: a run whose checks ran and answered 'cannot check' (ROAD over a collapsed model's constant output,
    cam_checks.maps_pass None) got the note 'the maps' checks ... were not run'."""
    lf = {
        c: {"lung_lift": 0.8, "lung_lift_ci95": [0.7, 0.9], "heart_lift": 2.0, "heart_lift_ci95": [1.7, 2.4]}
        for c in ("NORMAL", "PNEUMONIA")
    }
    constant = run(seed=0, lung_focus=lf, maps_pass=None)
    constant["gradcam"]["road"] = {"model_minus_random": 0.0, "model_minus_random_ci95": [0.0, 0.0], "degenerate": True}
    assert V.maps_uncheckable(constant) and not V.maps_uncheckable(run(maps_pass=None))
    rows = V.judge_entry("09", [constant])
    row = rows[_p(rows)]
    assert row["verdict"] == NOT_TESTED and "not run" not in row["note"]
    assert "1 of 1 runs' maps cannot be checked: the checks ran" in row["note"] and "constant" in row["note"]
    both = V.judge_entry("09", [constant, run(seed=1, lung_focus=lf, maps_pass=None)])[_p(rows)]["note"]
    assert (
        "1 of 2 runs' maps cannot be checked" in both
        and "1 of 2 runs' maps' checks (ROAD, randomisation) were not run" in both
    )


def test_maps_pass_needs_road_above_random_and_a_randomisation_change():
    from pneumolib.analysis.cam import maps_pass

    def sanity(ci, corr):
        return {"faithfulness": {"model_minus_random_ci95": ci}, "randomisation_rank_corr": {"mean": corr}}

    assert maps_pass(sanity([0.01, 0.05], 0.3)) is True
    assert maps_pass(sanity([-0.01, 0.05], 0.3)) is False  # ROAD not clearly above the random map
    assert maps_pass(sanity([0.01, 0.05], 0.95)) is False  # the map barely changes when the weights are randomised
    assert maps_pass(None) is None and maps_pass(sanity(None, 0.3)) is None


def test_a_nan_measurement_is_not_tested_rather_than_judged():
    lf = {c: {"lung_lift": float("nan"), "lung_lift_ci95": [float("nan")] * 2} for c in ("NORMAL", "PNEUMONIA")}
    row = V.judge(V.CLAIMS["01"][2], [run(lung_focus=lf)])
    assert row["verdict"] == NOT_TESTED and "NaN" in row["note"]


def _run(seed, share_pneumonia, auc=0.98, n=100, best=4, epochs=6):
    k = round(share_pneumonia * n)
    # confusion matrix rows = truth (NORMAL, PNEUMONIA), columns = prediction; half the films each class
    p_normal, p_pneu = min(k, n // 2), k - min(k, n // 2)
    cm = [[n // 2 - p_normal, p_normal], [n // 2 - p_pneu, p_pneu]]
    return {
        "config": {"seed": seed, "epochs": epochs, "max_train_images": 2000, "image_size": 128},
        "best_epoch": best,
        "val": {"confusion_matrix": cm, "auc": auc},
    }


def test_collapse_is_a_kept_checkpoint_calling_95_percent_of_validation_one_class():
    from pneumolib.studies.verdicts import collapsed

    assert collapsed(_run(0, 0.97)).startswith("calls 97% of validation films PNEUMONIA")
    assert collapsed(_run(0, 0.03)).startswith("calls 97% of validation films NORMAL")
    assert collapsed(_run(0, 0.94)) == "" and collapsed(_run(0, 0.50)) == ""
    # a run recorded before 'val' was kept: its kept epoch's share at 0.5
    old = {
        "best_epoch": 2,
        "history": [{"epoch": 1, "val_share_pneumonia": 0.5}, {"epoch": 2, "val_share_pneumonia": 1.0}],
    }
    assert "at 0.5" in collapsed(old)


def test_the_budget_rule_fails_on_one_collapsed_or_undertrained_seed():
    from pneumolib.studies.verdicts import budget_rule

    assert budget_rule([_run(s, 0.7) for s in range(3)])["passes"]
    assert not budget_rule([_run(0, 0.7), _run(1, 0.7), _run(2, 1.0)])["passes"]
    assert not budget_rule([_run(0, 0.7), _run(1, 0.7, auc=0.90), _run(2, 0.7)])["passes"]
    mixed = [_run(0, 0.7), _run(1, 0.7, epochs=3)]  # two budgets are not one budget
    assert not budget_rule(mixed)["passes"] and budget_rule(mixed)["budget"] is None


def test_a_verdict_reading_a_collapsed_seed_says_so():
    from pneumolib.studies import verdicts as V

    claim = V.Claim(
        entry="01",
        quote="q",
        quantity="val share",
        direction=">",
        threshold=0.5,
        measure=lambda m, refs: V.Estimate(0.7, 0.6, 0.8),
    )
    fine = V.judge(claim, [_run(s, 0.7) for s in range(3)])
    assert V.COLLAPSED not in fine["verdict"]
    row = V.judge(claim, [_run(0, 0.7), _run(1, 0.7), _run(2, 0.99)])
    assert row["verdict"].endswith(f"({V.COLLAPSED})") and "seed 2 calls 99%" in row["note"]


def test_the_two_claims_that_had_no_row_are_judged():
    from pneumolib.studies import verdicts as V

    quotes = {c.quote: c for e in ("04", "09") for c in V.CLAIMS[e]}
    assert quotes["Grad-CAM attention abnormal"].gradcam
    focal, against_baseline = (
        c for c in V.CLAIMS["09"] if c.quote == "FocalLoss alone does not fix it"
    )  # against the entry it changes, then against the baseline (issue 47: both comparisons, side by side)
    assert focal.needs == ("08",) and focal.direction == "<"
    assert against_baseline.needs == ("01",) and against_baseline.film == focal.film

    assert focal.film.threshold == 0.5 and focal.film.cls == "NORMAL"  # judged in tests/test_verdict_films.py


def test_seeds_disagree_accounts_for_every_seed():
    # 00_summary read "1 seed(s) hold, 1 do not" for three seeds: the third, whose interval straddled, went unsaid
    verdict, why = V.decide(
        [V.Estimate(0.2, 0.1, 0.3), V.Estimate(-0.2, -0.3, -0.1), V.Estimate(0.0, -0.1, 0.1)], ">", 0.0
    )
    assert verdict == SEEDS_DISAGREE and why == "1 seed(s) hold, 1 do not, 1 straddles 0"


def test_seeds_without_intervals_name_their_range_readably_regression():
    # 10's note read "the seeds' values -0.0663-0.435 lie on both sides of 0": a minus sign inside a dash range
    verdict, why = V.decide([Estimate(-0.0663), Estimate(0.254), Estimate(0.435)], ">", 0.0)
    assert verdict == SEEDS_DISAGREE
    assert why == "the seeds' values, from -0.066 to 0.435, lie on both sides of 0"


def test_the_recipe_title_says_what_it_does_to_a_film_not_where_the_model_looks_regression():
    # notebook 10 printed 'lungs only': the input is cut to the lungs, which does not make the model read them
    from pneumolib.studies.catalogue import RECOMMENDED

    title = RECOMMENDED.title.lower()
    assert "lungs only" not in title and "looks" not in title and "focus" not in title
    assert "cut to" in title and "black outside" in title


def _lf(lung=(0.7, 0.9), heart=(1.7, 2.4)):
    return {
        c: {"lung_lift": sum(lung) / 2, "lung_lift_ci95": list(lung), "heart_lift": sum(heart) / 2,
            "heart_lift_ci95": list(heart)}
        for c in ("NORMAL", "PNEUMONIA")
    }  # fmt: skip


def test_grad_cam_claims_over_five_seeds_are_judged_on_the_seeds_whose_maps_pass_regression():
    """Regression: one seed's failing maps made a Grad-CAM claim 'cannot tell (maps not faithful)' however many other
    seeds' maps passed, so the more seeds were trained the less such a claim could be decided (five seeds of entries
    01-06: 5 of 13 undecided claims). Now the seeds whose maps pass are judged, when they are at least three, and the
    row names the seeds left out."""
    runs = [run(seed=k, lung_focus=_lf(), maps_pass=k < 3) for k in range(5)]
    rows = V.judge_entry("09", runs)
    p = _p(rows)
    assert rows[p]["verdict"] == rows[p + 1]["verdict"] == HOLDS and rows[p]["n"] == 3
    assert "judged on the 3 of 5 seeds whose maps pass" in rows[p]["note"] and "seeds 3, 4 left out" in rows[p]["note"]
    two = [run(seed=k, lung_focus=_lf(), maps_pass=k < 2) for k in range(5)]
    assert V.judge_entry("09", two)[p]["verdict"] == V.MAPS_NOT_FAITHFUL  # 2 of 5: the maps are what is reported


def test_a_grad_cam_comparison_keeps_only_seeds_whose_both_maps_pass():
    this = [run(seed=k, focus=1.3) for k in range(5)]
    ref = [run(seed=k, focus=1.0, maps_pass=k not in (1, 4)) for k in range(5)]
    row = V.judge(V.CLAIMS["03"][0], this, {"01": ref})
    assert row["verdict"] != V.MAPS_NOT_FAITHFUL and row["n"] == 3 and "seeds 1, 4 left out" in row["note"]
    ref = [run(seed=k, focus=1.0, maps_pass=k == 0) for k in range(5)]
    assert V.judge(V.CLAIMS["03"][0], this, {"01": ref})["verdict"] == V.MAPS_NOT_FAITHFUL


def test_a_grad_cam_comparison_reports_its_probability_of_improvement():
    # comparisons computed from the seeds' recorded values (Grad-CAM lift against another entry) printed no
    # probability of improvement, though every per-film comparison had one
    this = [run(seed=k, focus=f) for k, f in enumerate((1.3, 1.1, 0.9))]
    ref = [run(seed=k, focus=f) for k, f in enumerate((1.0, 1.2, 0.8))]
    row = V.judge(V.CLAIMS["03"][0], this, {"01": ref})
    # pairs (this i, ref j) with this higher: 1.3 beats all 3, 1.1 beats 1.0 and 0.8, 0.9 beats 0.8 -> 6 of 9
    assert row["p_improve"] == pytest.approx(6 / 9)
    assert V.judge(V.CLAIMS["03"][0], this, {"01": this})["p_improve"] == pytest.approx(0.5)


def test_an_undecided_spread_over_seeds_says_how_many_seeds_would_decide_it():
    # the 'most stable' rows were the one kind of 'cannot tell' that said nothing of what would decide it
    def runs(accs):
        return [run(seed=i, acc=a) for i, a in enumerate(accs)]

    claim = next(c for c in V.CLAIMS["06"] if c.across_seeds is not None)
    a, b = [0.90, 0.93, 0.88, 0.92, 0.89], [0.91, 0.88, 0.93, 0.90, 0.92]
    row = V.judge(claim, runs(a), {"01": runs(b)})
    assert row["verdict"] == CANNOT_TELL
    seeds, films = row["needed"]
    assert seeds > 5 and films is None and f"about {seeds:,} seeds would decide it" in row["note"]
    est = V.Estimate(0.02, -0.01, 0.05)  # half-width 0.03 at a gap of 0.02 from 0, five seeds: 5 * 1.5^2 -> 12
    from pneumolib.studies.verdict_rule import spread_needed

    assert spread_needed(est, 5, 0.0) == (12, None) and spread_needed(V.Estimate(0.0, -0.1, 0.1), 5, 0.0) is None


def test_every_comparison_with_the_entry_changed_has_the_same_one_against_the_baseline_beside_it():
    """Issue 47: each entry is compared with the entry it changed, beside the comparison against the baseline (the
    same quantity, read on the same films), so a reader sees both the step and where the chain stands."""
    from pneumolib.studies.catalogue import MODIFIES

    checked = []
    for entry, claims in V.CLAIMS.items():
        # a per-film comparison names its entry in versus; a Grad-CAM lift comparison in needs (claim_kinds.lift_gain)
        against = lambda c: c.versus or (c.needs[0] if c.per_film is not None and len(c.needs) == 1 else "")  # noqa: E731
        step = [c for c in claims if against(c) and against(c) == MODIFIES.get(entry) != "01"]
        for c in step:
            assert any(
                against(b) == "01" and b.film == c.film and b.film_other == c.film_other and b.quote == c.quote
                for b in claims
            ), (entry, c.quote)
        checked += [entry] if step else []
    assert len(set(checked)) >= 4  # the bar: predecessor comparisons for at least four entries


def test_with_baseline_rewrites_the_comparison_against_entry_01_and_refuses_a_row_that_is_not_a_step():
    from pneumolib.studies.catalogue.claim_kinds import NORMAL_RECALL, claim, with_baseline

    step = claim(
        "03", "q", "NORMAL recall, this entry minus entry 02 (the entry this one changes)", "<", 0.10,
        film=NORMAL_RECALL, versus="02", label="NORMAL recall against entry 02", finding=("a", "b"), main=True,
    )  # fmt: skip
    same, base = with_baseline(step, ("c", "d"), threshold=0.0)
    assert same is step and base.versus == "01" and base.needs == ("01",) and base.threshold == 0.0
    assert base.quantity == "NORMAL recall, this entry minus entry 01 (the baseline)"
    assert base.label == "NORMAL recall against the baseline" and base.finding == ("c", "d") and not base.main
    assert with_baseline(step, ("c", "d"))[1].threshold == 0.10  # the step's own unless told
    with pytest.raises(ValueError, match="not a comparison"):
        with_baseline(base, ("c", "d"))  # already against the baseline
    with pytest.raises(ValueError, match="not a comparison"):
        with_baseline(claim("01", "q", "NORMAL recall (test)", "<", 0.8, film=NORMAL_RECALL), ("c", "d"))


def test_an_exact_count_row_whose_seeds_disagree_is_judged_by_its_mean_over_seeds_with_a_seed_count_regression():
    """Regression (issue 47): 08's exact-count row ('everything predicted PNEUMONIA') said 'seeds disagree' with no
    interval and no count of seeds that would decide it. Seeds that agree still decide it exactly; seeds that disagree
    are judged by the mean count over seeds, its interval from their spread, and a 'cannot tell' says how many seeds
    would decide it."""

    def subset(seed, k_normal_right):
        return run(seed=seed, test_subset={"n": 10, "confusion_matrix": [[k_normal_right, 5 - k_normal_right], [0, 5]]})

    claim = V.CLAIMS["08"][0]
    assert V.judge(claim, [subset(s, 0) for s in range(5)])["verdict"] == HOLDS  # every seed: nothing called NORMAL
    row = V.judge(claim, [subset(s, k) for s, k in enumerate((0, 2, 3, 2, 3))])  # mean 2.0, t interval (0.48, 3.52)
    assert row["verdict"] == CANNOT_TELL and row["needed"] is not None and row["needed"][0] > 5
    assert "seed by seed: 1 seed(s) hold, 4 do not" in row["note"] and "seeds" in row["note"].split(";")[-1]
    assert row["per_seed"] == (0, 2, 3, 2, 3) and row["mean"] == pytest.approx(2.0)
    row = V.judge(claim, [subset(s, k) for s, k in enumerate((0, 3, 3, 3, 3))])  # mean 2.4, interval (0.73, 4.07)
    assert row["verdict"] == FAILS and row["interval"][0] > 0.5 and "1 seed(s) hold, 4 do not" in row["note"]
    # too few seeds to resample: the seeds' disagreement is the verdict, as before
    assert V.judge(claim, [subset(0, 0), subset(1, 3)])["verdict"] == SEEDS_DISAGREE


def test_two_rows_of_one_claim_against_two_entries_read_as_different_sentences_regression():
    """Regression (issue 47 review): a claim compared with the entry it changed and with the baseline has two rows
    with one quote; 'not tested' and 'cannot tell' sentences printed only the quote, so the two read the same."""
    rows = V.judge_entry("05", [run(spec=0.9, weights="random init (ImageNet weights unavailable)")])
    said = [V.sentence(r) for r in rows]
    assert len(set(said)) == len(said), said
    assert any("against entry 04" in x for x in said) and any("against the baseline" in x for x in said)
