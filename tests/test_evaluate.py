import csv

import numpy as np
import pytest

from pneumolib.analysis.evaluate import (
    Scores,
    balanced_subset,
    bootstrap_ci,
    choose_threshold,
    compute_metrics,
    format_metrics,
    predict_samples,
)
from pneumolib.data.dataset import Sample


def _scores(labels, probs):
    return Scores(
        [Sample(f"/x/{i}.png", int(y), f"p{i}", "test") for i, y in enumerate(labels)], np.array(probs, float)
    )


def test_metrics_on_a_hand_checked_example():
    s = _scores([0, 0, 0, 1, 1, 1], [0.1, 0.6, 0.3, 0.9, 0.4, 0.8])
    m = compute_metrics(s, 0.5, n_boot=0)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(8 / 9)
    assert m["n"] == 6 and m["threshold"] == 0.5


def test_log_entry_8_report_is_reproduced_when_everything_is_pneumonia():
    # the log's 10-image report: every image predicted PNEUMONIA
    s = _scores([0] * 5 + [1] * 5, [0.99] * 10)
    m = compute_metrics(s, 0.5, n_boot=200)
    assert m["accuracy"] == 0.5 and m["specificity"] == 0.0 and m["sensitivity"] == 1.0
    lines = {ln.split()[0]: ln.split()[1:] for ln in m["report"].splitlines() if ln.strip()}
    assert lines["NORMAL"][:3] == ["0.00", "0.00", "0.00"]
    assert lines["PNEUMONIA"][:3] == ["0.50", "1.00", "0.67"]
    assert "macro" in m["report"]


def test_ten_images_give_wide_intervals_and_more_images_narrow_them():
    rng = np.random.default_rng(0)

    def width(n):
        y = np.repeat([0, 1], n // 2)
        p = np.clip(y * 0.6 + rng.normal(0.2, 0.25, n), 0, 1)
        lo, hi = bootstrap_ci(y, p, 0.5, n_boot=500)["accuracy"]
        return hi - lo

    assert width(10) > 0.3
    assert width(1000) < 0.1


def test_threshold_rules():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.8, 0.85, 0.9])
    assert choose_threshold("fixed:0.8", y, p) == 0.8
    assert choose_threshold("youden", y, p) == pytest.approx(0.8)
    t = choose_threshold("sensitivity:1.0", y, p)
    assert t == pytest.approx(0.4) and ((p >= t) & (y == 1)).sum() == 4
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold("median", y, p)


def test_youden_threshold_survives_a_prevalence_shift_where_accuracy_maximising_does_not():
    # the recipe's rule depends on the two recalls only, so a cohort with another class mix (the external one is
    # 37.5% NORMAL, the training folders 26%) would have chosen the same threshold; best-accuracy would not
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(100, int), np.ones(300, int)]
    p = np.clip(np.where(y == 1, rng.normal(0.65, 0.18, 400), rng.normal(0.35, 0.18, 400)), 0, 1)
    more_normal = np.r_[np.arange(400), np.repeat(np.arange(100), 4)]  # 5x every NORMAL film: 62.5% NORMAL

    def best_accuracy(y, p):
        cands = np.unique(p)
        return cands[int(np.argmax([((p >= t) == y).mean() for t in cands]))]

    assert choose_threshold("youden", y[more_normal], p[more_normal]) == choose_threshold("youden", y, p)
    assert best_accuracy(y[more_normal], p[more_normal]) > best_accuracy(y, p) + 0.05


def test_youden_shifted_needs_the_model_not_only_scores():
    with pytest.raises(ValueError, match="fit_threshold"):
        choose_threshold("youden_shifted", np.array([0, 1]), np.array([0.2, 0.8]))


def test_youden_shifted_pools_validation_with_its_seen_shifts_only(trained_run, monkeypatch):
    import pneumolib.analysis.evaluate as E
    from pneumolib.data.shifts import SHIFTS

    p, val_samples = trained_run.predictor, trained_run.data["val"]
    val = predict_samples(p.model, val_samples, p.preprocessing, tta=p.config.tta)
    seen = [s for s in SHIFTS if s.group == "seen"]
    pooled = [val] + [
        predict_samples(p.model, val_samples, p.preprocessing, tta=p.config.tta, transform=s) for s in seen
    ]
    y = np.concatenate([s.labels for s in pooled])
    pp = np.concatenate([s.probs for s in pooled])
    calls = []
    real = E.choose_threshold
    monkeypatch.setattr(E, "choose_threshold", lambda rule, y, p: calls.append((rule, len(p))) or real(rule, y, p))
    t = E.fit_threshold("youden_shifted", p.model, val, p.preprocessing, tta=p.config.tta)
    assert calls == [("youden", len(val_samples) * (1 + len(seen)))] and 0 < len(seen) < len(SHIFTS)
    assert t == real("youden", y, pp)
    assert E.fit_threshold("youden", p.model, val, p.preprocessing) == real("youden", val.labels, val.probs)


def test_scores_csv_lets_metrics_be_recomputed(tmp_path):
    s = _scores([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6])
    path = s.to_csv(tmp_path / "scores.csv", threshold=0.5)
    rows = list(csv.DictReader(open(path)))
    assert [r["prediction"] for r in rows] == ["NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA"]
    y = np.array([r["label"] == "PNEUMONIA" for r in rows], int)
    p = np.array([float(r["p_pneumonia"]) for r in rows])
    assert compute_metrics(_scores(y, p), 0.5, n_boot=0)["accuracy"] == compute_metrics(s, 0.5, n_boot=0)["accuracy"]


def test_balanced_subset_takes_n_per_class_seeded():
    s = _scores([0] * 20 + [1] * 30, np.linspace(0, 1, 50)).samples
    idx = balanced_subset(s, 5, seed=3)
    assert len(idx) == 10 and sum(s[i].label for i in idx) == 5
    assert idx == balanced_subset(s, 5, seed=3) and idx != balanced_subset(s, 5, seed=4)


def test_format_metrics_names_recalls_plainly():
    text = format_metrics(compute_metrics(_scores([0, 1, 0, 1], [0.1, 0.9, 0.6, 0.7]), 0.5, n_boot=50))
    assert "specificity (NORMAL recall)" in text and "95% CI" in text


def test_ten_correct_images_are_not_certainty():
    # the percentile bootstrap of 10/10 correct is [1, 1]; the Wilson interval says how little 10 images show
    m = compute_metrics(_scores([0] * 5 + [1] * 5, [0.1] * 5 + [0.9] * 5), 0.5, n_boot=200)
    assert m["ci95"]["accuracy"] == [1.0, 1.0]
    lo, hi = m["ci95_wilson"]["accuracy"]
    assert lo < 0.75 and hi == pytest.approx(1.0)
    assert m["ci95_wilson"]["specificity"][0] < 0.6
    assert "Wilson" in format_metrics(m)


def _clustered(n_patients=20, films=10):
    # each patient's films are all right or all wrong: 200 films, but only 20 independent outcomes
    right = np.random.default_rng(1).random(n_patients) < 0.6
    y = np.tile([0, 1], n_patients * films // 2)
    p = np.where(np.repeat(right, films), y * 0.8 + 0.1, 0.9 - y * 0.8)
    return Scores([Sample(f"/x/{i}.png", int(t), f"p{i // films}", "test") for i, t in enumerate(y)], p)


def test_intervals_resample_patients_not_images():
    s = _clustered()
    lo_i, hi_i = bootstrap_ci(s.labels, s.probs, 0.5, n_boot=400)["accuracy"]
    lo_p, hi_p = bootstrap_ci(s.labels, s.probs, 0.5, n_boot=400, groups=[x.patient for x in s.samples])["accuracy"]
    assert hi_p - lo_p > 2 * (hi_i - lo_i)
    m = compute_metrics(s, 0.5, n_boot=400)
    assert m["ci95_unit"] == "patient" and m["n_patients"] == 20
    assert m["ci95"]["accuracy"] == [lo_p, hi_p]


def test_auc_score_equals_sklearns_roc_auc_with_ties_and_is_nan_for_one_class():
    # auc_score replaced sklearn's roc_auc_score inside the bootstrap (1,000 calls per evaluation) for speed
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from pneumolib.core.stats import auc_score

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 200))
        y, p = rng.integers(0, 2, n), np.round(rng.random(n), int(rng.integers(1, 4)))  # rounding makes ties
        if len(set(y)) == 2:
            assert auc_score(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert np.isnan(auc_score(np.ones(5), np.linspace(0, 1, 5)))


def test_the_balanced_rule_cuts_where_the_class_balanced_calibration_crosses_one_half():
    from pneumolib.analysis.evaluate import balanced_threshold, choose_threshold

    rng = np.random.default_rng(0)
    # logits of each class from two Gaussians; 3:1 PNEUMONIA like the data; the balanced posterior crosses 0.5 at
    # the midpoint of the class means, whatever the class mix
    z = np.concatenate([rng.normal(-1.0, 1.0, 300), rng.normal(2.0, 1.0, 900)])
    y = np.r_[np.zeros(300, int), np.ones(900, int)]
    p = 1 / (1 + np.exp(-z))
    t = balanced_threshold(y, p)
    assert abs(np.log(t / (1 - t)) - 0.5) < 0.15
    assert choose_threshold("balanced", y, p) == t
    # the class mix does not move it (a Youden or accuracy cut would follow the 3:1 mix only through noise)
    t_even = balanced_threshold(np.r_[y[:300], y[300:600]], np.r_[p[:300], p[300:600]])
    assert abs(t - t_even) < 0.05
    # outputs ranked the wrong way round: no calibration to invert, the plain equal-prior cut
    assert balanced_threshold(y, 1 - p) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        balanced_threshold(np.ones(5, int), np.linspace(0.1, 0.9, 5))


def test_threshold_rules_are_compared_on_held_out_validation_patients_only():
    from pneumolib.studies.thresholds import compare_rules, format_rules

    rng = np.random.default_rng(1)
    n0, n1 = 60, 180
    z = np.concatenate([rng.normal(-1.0, 1.0, n0), rng.normal(1.5, 1.0, n1)])
    y = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    p = 1 / (1 + np.exp(-z))
    patients = [f"p{i // 2}" for i in range(len(y))]  # two films per patient
    shifted = [1 / (1 + np.exp(-(z + 0.5)))]  # a shift that makes every film look more like PNEUMONIA
    r = compare_rules(y, p, patients, shifted, n_splits=10, seed=0)
    assert set(r["rules"]) == {"fixed:0.5", "youden", "youden_shifted", "balanced"}
    for v in r["rules"].values():
        assert 0 <= v["normal_recall"] <= 1 and 0 <= v["pneumonia_recall"] <= 1 and v["normal_recall_sd"] >= 0
    # pooling copies that look more like PNEUMONIA pulls youden_shifted's cut up, away from youden's
    assert r["rules"]["youden_shifted"]["threshold_all"] > r["rules"]["youden"]["threshold_all"]
    assert "balanced" in format_rules(r) and r["n_films"] == n0 + n1


def test_the_thresholds_command_compares_rules_on_a_runs_validation_split(trained_run, capsys):
    from pneumolib.cli import main

    assert main(["thresholds", str(trained_run.run_dir), "--splits", "3"]) == 0
    out = capsys.readouterr().out
    for rule in ("fixed:0.5", "youden", "youden_shifted", "balanced"):
        assert rule in out
    assert "the test split is not read" in out


def test_the_vectorised_bootstrap_equals_point_metrics_on_each_resampled_set():
    from pneumolib.analysis.evaluate import point_metrics
    from pneumolib.core.stats import weighted_metrics

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    p = np.round(rng.random(60), 1)  # ties on purpose
    for _ in range(20):
        idx = rng.integers(0, 60, 60)
        w = np.bincount(idx, minlength=60).astype(float)[None]
        fast = weighted_metrics(w, y, p, 0.5)
        slow = point_metrics(y[idx], p[idx], 0.5)
        for k, v in slow.items():
            assert np.isnan(v) == np.isnan(fast[k][0]) and (np.isnan(v) or abs(v - fast[k][0]) < 1e-12), k
