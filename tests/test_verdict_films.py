"""Verdicts from per-film evidence on constructed runs: paired by seed on the same films, each way, the null
undecided, what would decide it, the log's chain, the claims as worded, and the entry's plain sentence."""

import re
from pathlib import Path

import numpy as np
import pytest

from pneumolib.core import config as C
from pneumolib.core.stats import wilson
from pneumolib.studies import catalogue
from pneumolib.studies import verdicts as V
from pneumolib.studies.verdict_films import film_arrays, film_effect

N_NORMAL, N_PNEU = 100, 200


def film_run(tmp_path, entry, seed, normal_p, pneu_p=None, threshold=0.5):
    """A run folder with scores_test.csv: NORMAL films get P(PNEUMONIA) from NORMAL_P (one per film, or a recall:
    that share of films at 0.2, the rest at 0.9), PNEUMONIA films from PNEU_P likewise (default all 0.9)."""

    def probs(spec, n, right, wrong):
        if np.ndim(spec):
            return list(spec)
        k = round(spec * n)
        return [right] * k + [wrong] * (n - k)

    pn = probs(normal_p, N_NORMAL, 0.2, 0.9)
    pp = probs(0.95 if pneu_p is None else pneu_p, N_PNEU, 0.9, 0.2)
    d = tmp_path / entry / f"seed{seed}"
    d.mkdir(parents=True)
    lines = ["path,patient,split,label,p_pneumonia,prediction"]
    for label, ps in (("NORMAL", pn), ("PNEUMONIA", pp)):
        for i, p in enumerate(ps):
            pred = "PNEUMONIA" if p >= threshold else "NORMAL"
            lines.append(f"/x/{label}/{i}.jpeg,{label}-{i // 2},test,{label},{p},{pred}")
    (d / "scores_test.csv").write_text("\n".join(lines) + "\n")
    cfg = {"seed": seed, "epochs": 4, "max_train_images": 1500, "image_size": 128, "pretrained": False}
    return {"config": cfg, "run_dir": str(d), "weights": "random init", "gradcam": {"maps_pass": None}}


def runs(tmp_path, entry, recalls, **kw):
    return [film_run(tmp_path, entry, s, r, **kw) for s, r in enumerate(recalls)]


def test_the_rule_comes_out_each_way_on_paired_films(tmp_path):
    base = runs(tmp_path, "01", [0.95, 0.93, 0.96, 0.94, 0.95])
    claim = V.CLAIMS["02"][0]  # NORMAL recall, 02 minus 01, below -0.10
    fell = V.judge(claim, runs(tmp_path, "02a", [0.40, 0.45, 0.35, 0.50, 0.42]), {"01": base})
    assert fell["verdict"] == V.HOLDS and fell["p_improve"] == 0.0 and fell["n_films"] == N_NORMAL + N_PNEU
    assert fell["per_seed"] == pytest.approx((-0.55, -0.48, -0.61, -0.44, -0.53))
    kept = V.judge(claim, runs(tmp_path, "02b", [0.94, 0.93, 0.95, 0.93, 0.94]), {"01": base})
    assert kept["verdict"] == V.FAILS and kept["interval"][0] > -0.10


def test_a_null_effect_is_not_decided_and_says_what_would_decide_it(tmp_path):
    base = runs(tmp_path, "01", [0.80, 0.90, 0.85, 0.75, 0.88])
    this = runs(tmp_path, "03", [0.85, 0.84, 0.80, 0.86, 0.82])
    claim = V.CLAIMS["03"][3]  # NORMAL recall, 03 minus 02, below 0.10 ... read here against 0 both ways
    for direction in "<>":
        c = V.Claim("03", "q", "NORMAL recall, this minus 02", direction, 0.0, film=claim.film, versus="02")
        row = V.judge(c, this, {"02": base})
        assert row["verdict"] == V.CANNOT_TELL and "would decide it" in row["note"] and row["needed"]


def test_needed_text_names_seeds_and_films():
    assert V.needed_text((9, 1400)) == "about 9 seeds (or 1,400 films per seed) would decide it"
    assert V.needed_text((12, None)) == "about 12 seeds would decide it (more films alone would not)"
    assert V.needed_text(None).startswith("the effect sits on the threshold")


def test_the_paired_interval_is_narrower_than_the_old_envelope(tmp_path):
    rng = np.random.default_rng(0)
    base_p = rng.uniform(0, 1, (5, N_NORMAL))
    shift = rng.uniform(0, 0.2, (5, N_NORMAL))  # the same films, each a little more PNEUMONIA in the other arm
    base = [film_run(tmp_path, "01", s, base_p[s]) for s in range(5)]
    this = [film_run(tmp_path, "02", s, np.clip(base_p[s] + shift[s], 0, 1)) for s in range(5)]
    q = V.CLAIMS["02"][0].film
    e = film_effect(q, this, base)
    a, b, _, _ = film_arrays(q, this, base)
    wa = [wilson(np.nansum(r), int(np.sum(~np.isnan(r)))) for r in a]
    wb = [wilson(np.nansum(r), int(np.sum(~np.isnan(r)))) for r in b]
    old = max(h for _, h in wa) - min(lo for lo, _ in wb) - (min(lo for lo, _ in wa) - max(h for _, h in wb))
    assert e.high - e.low < old / 2


def test_the_chain_is_derived_from_the_log_and_complete():
    log = [c.entry for c in catalogue.LOG_ENTRIES]
    assert set(catalogue.MODIFIES) == set(log[1:]) | {"10"}
    for entry in log[1:]:
        prev = catalogue.MODIFIES[entry]
        assert prev < entry  # each entry changes an earlier one
        cfg = catalogue.get_config(entry)
        fewest = min(len(C.diff(catalogue.get_config(e), cfg)) for e in log if e < entry)
        assert len(C.diff(catalogue.get_config(prev), cfg)) == fewest  # ... the one it differs from least
        assert catalogue.previous(cfg).entry == prev
    # "better or worse" reads from the chain: entries compared with the entry they change and with the baseline
    both = [
        e for e in log[1:] if catalogue.MODIFIES[e] != "01" and {catalogue.MODIFIES[e], "01"} <= set(V.compared_with(e))
    ]
    assert len(both) >= 4, both


def test_focal_loss_is_judged_at_05_and_at_08_as_two_rows(tmp_path):
    before = runs(tmp_path, "08", [0.05] * 3)
    # FocalLoss moves the NORMAL films to P(PNEUMONIA) 0.6: still PNEUMONIA at 0.5, NORMAL at 0.8
    focal = [film_run(tmp_path, "09", s, [0.6] * N_NORMAL, threshold=0.8) for s in range(3)]
    rows = {(r["claim"], r["versus"], r["quantity"][:24]): r for r in V.judge_entry("09", focal, {"08": before})}
    at05 = rows[("FocalLoss alone does not fix it", "08", "NORMAL recall at thresho")]
    at08 = rows[("FocalLoss alone does not fix it (with threshold 0.8)", "08", "NORMAL recall, this entr")]
    assert at05["verdict"].split(" (")[0] == V.HOLDS and at05["mean"] == pytest.approx(-0.05)
    assert at08["verdict"].split(" (")[0] == V.FAILS and at08["mean"] == pytest.approx(0.95)
    assert (
        rows[("Still every image PNEUMONIA", "", "share of test films call")]["verdict"]
        == f"{V.FAILS} ({V.RANDOM_INIT})"
    )


def _sentences(text: str) -> list[str]:
    return [x for x in re.split(r"(?<=\.)\s+(?=[A-Z0-9\"])", text) if x]


def test_the_headline_is_the_main_finding_then_a_tally_and_follows_the_numbers(tmp_path):
    base = runs(tmp_path, "01", [0.95, 0.93, 0.96, 0.94, 0.95])
    a = V.judge_entry("02", runs(tmp_path, "02a", [0.40, 0.45, 0.35, 0.50, 0.42]), {"01": base})
    b = V.judge_entry("02", runs(tmp_path, "02b", [0.30, 0.35, 0.25, 0.40, 0.32]), {"01": base})
    ha, hb = V.headline(a), V.headline(b)
    assert ha.startswith("The blur on NORMAL films made the model call more of them PNEUMONIA: NORMAL recall fell by")
    assert "on all five seeds" in ha and f"fell by {abs(a[0]['mean']):.2f}" in ha
    assert ha != hb and f"fell by {abs(b[0]['mean']):.2f}" in hb
    second = a[1]["verdict"].split(" (")[0].split(":")[0]
    assert ha.endswith(f" 1 more claim below: 1 {second}.") and len(_sentences(ha)) == 2
    assert V.headline(a[:1]) == V.sentence(a[0])  # one claim: its sentence alone


def test_the_headline_of_an_entry_with_many_claims_stays_two_sentences(tmp_path):
    base = runs(tmp_path, "01", [0.95, 0.93, 0.96])
    mid = runs(tmp_path, "02", [0.40, 0.45, 0.35])
    rows = V.judge_entry("03", runs(tmp_path, "03", [0.50, 0.55, 0.45]), {"01": base, "02": mid})
    h = V.headline(rows)
    main = next(r for r in rows if r["main"])  # the log's conclusion of entry 03 comes first, not its first row
    assert main["claim"] == "central focus hurts this model" and main is not rows[0]
    assert h.startswith(V.sentence(main)) and len(_sentences(h)) <= 2
    more, tally = re.search(r" (\d+) more claims below: (.*)\.$", h).groups()
    assert sum(int(part.split(" ", 1)[0]) for part in tally.split(", ")) == int(more) == len(rows) - 1
    assert V.headline([]) == ""


def test_random_init_is_said_in_the_verdict_of_an_entry_that_asked_for_imagenet_weights(tmp_path):
    this = runs(tmp_path, "06", [0.5, 0.55, 0.45])
    row = next(r for r in V.judge_entry("06", this) if r["claim"] == "NORMAL accuracy still low")
    assert row["verdict"] == f"{V.HOLDS} ({V.RANDOM_INIT})" and "cannot speak for ImageNet pretraining" in row["note"]
    assert V.RANDOM_INIT not in V.judge_entry("03", this)[2]["verdict"]  # 03 never asked for them


def test_a_recall_interval_is_clipped_to_one_regression(tmp_path):
    # a recall near 1 printed '(0.85 to 1.02)': the t-widened interval of the mean reached past what a recall can be
    this = [film_run(tmp_path, "01", s, 0.9, pneu_p=r) for s, r in enumerate([1.0, 0.90, 1.0])]
    claim = V.CLAIMS["01"][0]  # PNEUMONIA recall above 0.90
    raw = film_effect(claim.film, this)
    row = V.judge(claim, this)
    assert raw.high > 1 and row["interval"] == (pytest.approx(raw.low), 1.0)
    assert row["verdict"].split(" (")[0] == V.verdict((raw.low, raw.high), ">", 0.90)
    assert "to 1.00)" in V.sentence(row)


def test_clipping_an_interval_to_its_range_never_changes_a_verdict_inside_the_range():
    rng = np.random.default_rng(1)
    for bounds in ((0.0, 1.0), (-1.0, 1.0), (0.0, np.inf)):
        hi_b = bounds[1] if np.isfinite(bounds[1]) else 3.0
        for _ in range(2000):
            point = rng.uniform(bounds[0], hi_b)  # a mean of values in range lies in range
            lo, hi = point - rng.uniform(0, 0.6), point + rng.uniform(0, 0.6)
            threshold = rng.uniform(bounds[0], hi_b)
            clipped = V.clip_interval((lo, hi), bounds)
            assert bounds[0] <= clipped[0] <= clipped[1] <= bounds[1]
            for direction in "<>":
                assert V.verdict(clipped, direction, threshold) == V.verdict((lo, hi), direction, threshold)
    assert V.clip_interval((0.85, 1.02), None) == (0.85, 1.02)  # a quantity without a range is left as it is


def test_a_balanced_seed_effect_is_the_mean_of_the_class_means():
    from pneumolib.core.stats import seed_effect

    labels = np.array([0, 0, 0, 1])  # three films of one class, one of the other: pooled and balanced means differ
    a = np.array([[1.0, 1.0, 1.0, 3.0], [2.0, 2.0, 2.0, 4.0]])
    e = seed_effect(a, patients=np.arange(4), strata=labels, n_boot=200, balanced=True)
    assert e.per_seed == pytest.approx((2.0, 3.0)) and e.point == pytest.approx(2.5)
    assert seed_effect(a, patients=np.arange(4), strata=labels, n_boot=200).per_seed == pytest.approx((1.5, 2.5))
    with pytest.raises(ValueError, match="strata"):
        seed_effect(a, balanced=True)


def _lift_run(tmp_path, entry, seed, lifts, n_normal, key_ok=True, order=None):
    """A run folder whose explanation.npz keeps per-film lung lifts LIFTS (NaN: the mask failed; the first N_NORMAL
    films NORMAL), its films written in ORDER (default as given), and metrics recording each class's mean lift."""
    from pneumolib.analysis.cam_explanation import Explanation
    from pneumolib.core.runs import RunDir, checkpoint_key
    from pneumolib.data.dataset import Sample

    d = tmp_path / entry / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "checkpoint.pt").write_bytes(b"weights")
    lifts = np.asarray(lifts, float)
    n = len(lifts)
    order = np.arange(n) if order is None else np.asarray(order)
    samples = [Sample(Path(f"/films/f{i}.jpeg"), int(i >= n_normal), f"p{i}", "test") for i in order]
    area, z = np.full(n, 0.25), np.zeros((n, 2, 2))
    problems = ["mask failed" if np.isnan(lifts[i]) else "" for i in order]
    expl = Explanation(samples, z.astype(np.uint8), z, np.full(n, 0.5), 0.5, z.astype(bool), ["annotated"] * n,
                       np.nan_to_num(lifts[order]) * area, area, np.full(n, 0.1), "gradcam", "PNEUMONIA",
                       mask_problems=problems)  # fmt: skip
    expl.save(RunDir(d).explanation, {"checkpoint": checkpoint_key(d / "checkpoint.pt") if key_ok else "another"})
    lf = {c: {"lung_lift": float(np.nanmean(part)), "lung_lift_ci95": [0.0, 9.0]}
          for c, part in (("NORMAL", lifts[:n_normal]), ("PNEUMONIA", lifts[n_normal:]))}  # fmt: skip
    return {"config": {"seed": seed}, "run_dir": str(d), "lung_focus": lf, "gradcam": {"maps_pass": True}}


def test_a_grad_cam_lift_comparison_is_paired_per_film_when_the_runs_keep_their_maps(tmp_path):
    # a lift against another entry added the two seeds' intervals as if independent, although both maps are of the
    # same films: it is now the paired two-level bootstrap, seed i against seed i, each seed's recorded value kept
    from pneumolib.core.stats import seed_mean
    from pneumolib.studies.verdict_estimates import lung_lift
    from pneumolib.studies.verdict_films import FilmBook, lift_effect

    rng = np.random.default_rng(0)
    n, n_normal = 40, 10  # unequal classes: the balanced mean is not the mean over films
    base = [rng.uniform(0.5, 1.5, n) for _ in range(3)]
    for b in base:
        b[3] = np.nan  # one film's mask failed, in both entries (the same film and mask)
    gain = [base[s] + 0.1 + 0.1 * s + rng.normal(0, 0.05, n) * (np.arange(n) >= n_normal) for s in range(3)]
    ref = [_lift_run(tmp_path, "01", s, base[s], n_normal) for s in range(3)]
    this = [_lift_run(tmp_path, "03", s, gain[s], n_normal, order=rng.permutation(n)) for s in range(3)]
    e = lift_effect(this, ref, n_boot=500)
    recorded = [lung_lift(m).value - lung_lift(r).value for m, r in zip(this, ref)]
    assert e is not None and e.per_seed == pytest.approx(recorded) and e.n_films == n
    pooled = [np.nanmean(g) - np.nanmean(b) for g, b in zip(gain, base)]
    assert not np.allclose(pooled, recorded)  # a mean over films would not have matched
    unpaired = seed_mean(recorded, [1.0] * 3)  # the recorded path: the seeds' intervals added (here +-0.5 each)
    assert e.high - e.low < unpaired.high - unpaired.low
    row = V.judge(V.CLAIMS["03"][0], this, {"01": ref}, book=FilmBook())
    assert row["evidence"].startswith("paired per film") and row["p_improve"] is not None
    stale = [_lift_run(tmp_path / "x", "03", s, gain[s], n_normal, key_ok=s != 1) for s in range(3)]
    assert lift_effect(stale, ref) is None  # one run's maps are another checkpoint's: the recorded values decide
    assert not V.judge(V.CLAIMS["03"][0], stale, {"01": ref})["evidence"].startswith("paired per film")
    odd = [g.copy() for g in gain]
    odd[0][20] = np.nan  # a mask failed in one entry only: the films both count differ from those recorded
    assert lift_effect([_lift_run(tmp_path / "y", "03", s, odd[s], n_normal) for s in range(3)], ref) is None


def test_a_balanced_mean_of_a_seed_with_an_empty_class_is_refused_not_zero():
    from pneumolib.core.stats import seed_effect

    labels = np.array([0, 0, 1, 1])
    a = np.array([[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, np.nan, np.nan]])  # seed 1 has no counted PNEUMONIA film
    with pytest.raises(ValueError, match="no counted film"):
        seed_effect(a, patients=np.arange(4), strata=labels, n_boot=50, balanced=True)


def _recorded(m, normal, pneu):
    """The run's recorded test recalls, as metrics.json keeps them beside its scores."""
    return dict(m, test={"n": N_NORMAL + N_PNEU, "specificity": normal, "sensitivity": pneu})


def test_the_most_balanced_claim_is_read_per_film_across_every_earlier_entry_regression(tmp_path):
    """Regression (issue 47 audit): 07's 'most balanced model so far' (the smallest recall gap of entries 01-06 minus
    07's) was read from recorded per-seed values only. It is now read from the films, seed i of every entry on the
    same films, with the two-level bootstrap (core.stats.seed_statistic), where that reproduces each seed's recorded
    value; a run without its recorded recalls falls back to them."""
    from pneumolib.studies.verdict_films import gap_effect

    def entry(name, normals, pneu):  # the seeds' NORMAL recalls, one PNEUMONIA recall
        return [_recorded(film_run(tmp_path, name, s, r, pneu_p=pneu), r, pneu) for s, r in enumerate(normals)]

    earlier = {e: entry(e, [0.50, 0.55, 0.45], 0.95) for e in ("01", "02", "03", "04", "05")}
    earlier["06"] = entry("06", [0.70, 0.72, 0.68], 0.95)  # the most balanced before 07: gaps 0.25, 0.23, 0.27
    this = entry("07", [0.90, 0.92, 0.88], 0.95)  # gaps 0.05, 0.03, 0.07: better than 06 by 0.20 on every seed
    e = gap_effect(this, earlier, tuple(earlier))
    assert e is not None and e.per_seed == pytest.approx((0.20, 0.20, 0.20)) and e.n_films == N_NORMAL + N_PNEU
    assert e.low > 0 and e.film_part > 0  # the films' part is measured, not assumed
    claim = next(c for c in V.CLAIMS["07"] if c.quote == "The most balanced model so far")
    row = V.judge(claim, this, earlier)
    assert row["verdict"].startswith(V.HOLDS) and "per film, seed i of every entry" in row["evidence"]
    # recorded recalls that the films do not reproduce: the per-film reading is refused, the recorded values decide
    stale = [dict(m, test=dict(m["test"], specificity=0.5)) for m in this]
    assert gap_effect(stale, earlier, tuple(earlier)) is None
    assert "per film" not in V.judge(claim, stale, earlier)["evidence"]
