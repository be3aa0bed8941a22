"""The sensitivity row of notebooks 01 and 10: the same claims judged at the series' budget and on a second root of
runs at the cpu profile's own budget, their agreement computed from both sides' verdicts, missing runs named and
never trained, and one seed shown as a point value without an interval."""

import json
from types import SimpleNamespace

import pytest

from pneumolib.notebook import sensitivity as NS
from pneumolib.studies import sensitivity as SE
from pneumolib.studies.catalogue import get_config

SERIES = (4, 1500, 128)  # the series' budget (below the cpu profile)
CPU = SE.own_budget(get_config("01"))  # the baseline at the cpu profile's own budget
N_NORMAL, N_PNEU = 100, 200


def run_folder(root, seed, normal_recall, b=CPU, pneumonia_recall=0.95, profile="cpu"):
    """ROOT/01_baseline/seed{SEED} as a finished run at budget B: scores_test.csv (NORMAL films right at 0.2, wrong
    at 0.9; PNEUMONIA likewise), metrics.json and a placeholder checkpoint (never loaded)."""
    d = root / "01_baseline" / f"seed{seed}"
    d.mkdir(parents=True)
    lines = ["path,patient,split,label,p_pneumonia,prediction"]
    for label, n, recall, right, wrong in (
        ("NORMAL", N_NORMAL, normal_recall, 0.2, 0.9),
        ("PNEUMONIA", N_PNEU, pneumonia_recall, 0.9, 0.2),
    ):
        k = round(recall * n)
        for i, p in enumerate([right] * k + [wrong] * (n - k)):
            pred = "PNEUMONIA" if p >= 0.5 else "NORMAL"
            lines.append(f"/x/{label}/{i}.jpeg,{label}-{i // 2},test,{label},{p},{pred}")
    (d / "scores_test.csv").write_text("\n".join(lines) + "\n")
    e, n, px = b
    cfg = {"name": "baseline", "seed": seed, "epochs": e, "max_train_images": n, "image_size": px, "pretrained": False}
    metrics = {"profile": profile, "config": cfg, "weights": "random init", "gradcam": {"maps_pass": None}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "checkpoint.pt").write_bytes(b"")
    return d


def series_runs(root, recalls, b=SERIES):
    for s, r in enumerate(recalls):
        run_folder(root, s, r, b)
    found, lacking = SE.load_profile_runs(root, get_config("01"), range(len(recalls)), b)
    assert not lacking
    return found


def cpu_side(root, seeds=(0, 1, 2)):
    return SE.load_profile_runs(root, get_config("01"), seeds, CPU)


def by_claim(rows):
    return {r["claim"]: r for r in rows}


def test_the_larger_budget_is_the_one_at_least_as_large_in_every_field():
    assert SE.larger(SERIES, CPU) == 1 and SE.larger(CPU, SERIES) == -1
    assert SE.larger(SERIES, SE.own_budget(get_config("recommended"))) == 1  # None: every film
    assert SE.larger((6, 1000, 128), (4, 2000, 128)) == 0 and SE.larger(CPU, CPU) == 0


def test_sensitivity_row_says_which_verdict_stands_when_the_budgets_disagree(tmp_path):
    short = series_runs(tmp_path / "series", [0.55, 0.50, 0.60, 0.52, 0.58])  # NORMAL recall low: 'ambiguous'
    for s, r in enumerate([0.97, 0.96, 0.98]):  # trained longer: NORMAL recall high
        run_folder(tmp_path / "cpu", s, r)
    other, lacking = cpu_side(tmp_path / "cpu")
    assert len(other) == 3 and not lacking
    rows = by_claim(SE.compare("01", (short, {}), (other, {})))
    ambiguous, well = rows["normal images ambiguous"], rows["Pneumonia classified well"]
    assert ambiguous["series budget"].startswith("holds") and ambiguous["cpu profile"].startswith("does not hold")
    assert ambiguous["agreement"].startswith("do not agree")
    assert "the cpu profile's verdict, does not hold, stands" in ambiguous["agreement"]
    assert well["agreement"] == SE.AGREE  # PNEUMONIA recall 0.95 on both sides
    line = SE.verdict_line(list(rows.values()))
    assert line.startswith("The verdicts do not agree on 1 of 2") and '"normal images ambiguous"' in line


def test_sensitivity_row_agrees_when_both_budgets_decide_alike(tmp_path):
    short = series_runs(tmp_path / "series", [0.55, 0.50, 0.60, 0.52, 0.58])
    for s, r in enumerate([0.50, 0.45, 0.55]):
        run_folder(tmp_path / "cpu", s, r)
    rows = SE.compare("01", (short, {}), (cpu_side(tmp_path / "cpu")[0], {}))
    assert [r["agreement"] for r in rows[:2]] == [SE.AGREE, SE.AGREE]
    assert rows[2]["agreement"].startswith("not decided")  # the Grad-CAM claim: its maps' checks were not run
    assert SE.verdict_line(rows).startswith("The verdicts agree: the 2 claim(s) decided at both budgets")


def test_one_seed_is_a_point_value_without_interval_and_decides_nothing(tmp_path):
    short = series_runs(tmp_path / "series", [0.55, 0.50, 0.60, 0.52, 0.58])
    run_folder(tmp_path / "cpu", 0, 0.97)  # one seed whose films alone would look decisive
    other, lacking = cpu_side(tmp_path / "cpu")
    rows = by_claim(SE.compare("01", (short, {}), (other, {})))
    one = rows["normal images ambiguous"]
    assert one["cpu profile"] == "one seed: no interval; 0.970, not on the claimed side (< 0.8)"
    assert one["agreement"] == "not decided at the cpu profile"
    assert [x.split(" ")[0] for x in lacking] == ["01_baseline/seed1", "01_baseline/seed2"]


def test_missing_cpu_runs_are_named_and_never_trained(tmp_path, monkeypatch, capsys):
    from pneumolib.studies import experiment

    def no_training(*a, **k):
        raise AssertionError("the sensitivity row trained a run")

    monkeypatch.setattr(experiment, "run_experiment", no_training)
    short = series_runs(tmp_path / "series", [0.55, 0.50, 0.60])
    root = tmp_path / "cpu"
    run_folder(root, 0, 0.97)
    run_folder(root, 1, 0.97, b=SERIES)  # a run at the series' budget is not a cpu-profile run
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    NS.sensitivity("01", SimpleNamespace(seeds=[0, 1, 2]), short, None, root)
    out = capsys.readouterr().out
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # read only
    assert "SENSITIVITY_RUNS/01_baseline/seed2 (no finished run)" in out
    assert "SENSITIVITY_RUNS/01_baseline/seed1 (profile cpu, 4 epochs x 1500 films" in out
    assert "The sensitivity is not measured for them" in out and "seed(s) 0 of entry 01, 1 seed (one seed" in out


def test_without_a_root_the_cell_says_in_one_line_how_to_measure_it(tmp_path, capsys):
    short = series_runs(tmp_path / "series", [0.55, 0.50, 0.60])
    NS.sensitivity("01", SimpleNamespace(seeds=[0, 1, 2]), short, None, None)
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "not measured in this render" in out
    assert "PNEUMOLIB_SENSITIVITY_RUNS" in out and "tools/train_series.py DATA_DIR SENSITIVITY_RUNS 01" in out


@pytest.mark.parametrize("entry,targets", [("01", "01 --profile cpu"), ("10", "10 matched --profile cpu")])
def test_the_training_command_names_what_the_claims_need(entry, targets):
    assert f"SENSITIVITY_RUNS {targets} --seeds 0,1" in NS.train_command(entry, [0, 1])


def test_a_root_without_any_run_of_the_entry_says_not_measured_and_shows_no_table(tmp_path, capsys):
    short = series_runs(tmp_path / "series", [0.55, 0.50, 0.60])
    (tmp_path / "cpu").mkdir()
    NS.sensitivity("10", SimpleNamespace(seeds=[0]), short, {"matched_baseline": []}, tmp_path / "cpu")
    out = capsys.readouterr().out
    assert "SENSITIVITY_RUNS/10_recommended/seed0 (no finished run)" in out
    assert "SENSITIVITY_RUNS/ablation/baseline_at_recommended_budget/seed0 (no finished run)" in out
    assert "the sensitivity is not measured in this render" in out and "agreement" not in out
    assert not any((tmp_path / "cpu").iterdir())  # nothing trained or written


def test_a_render_at_the_cpu_profiles_own_budget_has_nothing_to_compare(tmp_path, capsys):
    runs = series_runs(tmp_path / "series", [0.55, 0.50, 0.60], b=CPU)
    NS.sensitivity("01", SimpleNamespace(seeds=[0, 1, 2]), runs, None, tmp_path / "elsewhere")
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "no smaller budget to check" in out
