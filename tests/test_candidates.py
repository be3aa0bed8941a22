"""The recipe-candidate table as a command: recomputed from finished run folders, paired by seed."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from pneumolib.analysis.evaluate import point_metrics
from pneumolib.cli import main
from pneumolib.models.checkpoint import save_checkpoint
from pneumolib.studies import candidates
from pneumolib.studies.stress import stress_test


@pytest.fixture(scope="module")
def two_candidates(trained_run_session, tmp_path_factory):
    """Two 'candidates' of two seeds each: copies of one trained run, the second with its threshold raised."""
    root = tmp_path_factory.mktemp("cand")
    groups = {}
    for name, shift in (("a", 0.0), ("b", 0.2)):
        groups[name] = []
        for seed in (0, 1):
            d = root / name / f"seed{seed}"
            shutil.copytree(trained_run_session.run_dir, d, ignore=shutil.ignore_patterns("*.csv"))
            p = trained_run_session.predictor
            extra = dict(p.extra or {}, holdout="folders")
            save_checkpoint(
                d / "checkpoint.pt", p.model, replace(p.config, seed=seed), min(0.99, p.threshold + shift), extra
            )
            groups[name].append(d)
    yield groups
    shutil.rmtree(root, ignore_errors=True)  # eight 45 MB checkpoints: not kept until the session ends


def test_candidates_table_matches_the_stress_test_and_pairs_by_seed(two_candidates, trained_run, tmp_path, capsys):
    js = tmp_path / "c.json"
    specs = [f"{n}={','.join(map(str, ds))}" for n, ds in two_candidates.items()]
    assert main(["candidates", *specs, "--no-ensemble", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "b minus a, paired by seed (0, 1)" in out and "| a s0 (" in out
    res = json.loads(js.read_text())
    row = res["a"]["runs"][str(two_candidates["a"][0])]
    p = trained_run.predictor
    rep = stress_test(p.model, trained_run.data["test"], p.preprocessing, p.threshold, tta=p.config.tta)
    assert row["at_checkpoint"]["mean_spec"] == pytest.approx(rep.summary()["stress_specificity"], abs=1e-12)
    clean = point_metrics(trained_run.test.labels, trained_run.test.probs, p.threshold)
    assert row["at_checkpoint"]["clean"]["auc"] == pytest.approx(clean["auc"], abs=1e-9)
    # the raised threshold can only lower or keep PNEUMONIA recall on every shift
    b = res["b"]["runs"][str(two_candidates["b"][0])]
    assert b["at_checkpoint"]["mean_sens"] <= row["at_checkpoint"]["mean_sens"]
    capsys.readouterr()
    assert main(["candidates", "--from-json", str(js)]) == 0 and capsys.readouterr().out.strip() == out.strip()


def test_candidates_refuses_a_malformed_group_in_one_line(capsys):
    assert main(["candidates", "no_equals_sign"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NAME=RUN_DIR" in err[0]
    with pytest.raises(ValueError):
        candidates.parse_groups(["x="])


# --- the selection on validation (issue 22) -----------------------------------------------------------------
def _run_folder(root, name, seed, auc_like, outside_flips, outside=0.02, inside=0.2):
    """A finished run folder as select() reads it: metrics.json's config, scores_val.csv, shortcuts_val.json."""
    import csv
    import json

    d = root / name / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"config": {"seed": seed, "epochs": 6, "max_train_images": 2000}}))
    rng = np.random.default_rng(seed)
    with (d / "scores_val.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "patient", "split", "label", "p_pneumonia", "prediction"])
        for i in range(60):
            y = i % 2
            p = float(np.clip(0.5 + (2 * y - 1) * auc_like + rng.normal(0, 0.2), 0, 1))  # separation auc_like
            w.writerow(
                [
                    f"f{i}",
                    f"p{i}",
                    "val",
                    ("NORMAL", "PNEUMONIA")[y],
                    f"{p:.4f}",
                    ("NORMAL", "PNEUMONIA")[int(p >= 0.5)],
                ]
            )
    (d / "shortcuts_val.json").write_text(
        json.dumps(
            {
                "probe_auc": 0.8,
                "outside_lung_reliance": {"flipped_share": outside_flips, "mean_abs_change": outside},
                "inside_lung_reliance": {"flipped_share": 0.3, "mean_abs_change": inside},
                "worst_group": {"worst": {"recall": 0.7}},
            }
        )
    )
    return d


def test_select_picks_the_best_validation_auc_among_candidates_that_look_at_the_lungs(tmp_path):
    from pneumolib.studies.candidates import LUNG_BOUND, format_selection, select

    shortcut = [_run_folder(tmp_path, "shortcut", s, 0.3, outside_flips=0.3) for s in range(3)]  # best AUC
    lungs = [_run_folder(tmp_path, "lungs", s, 0.05, outside_flips=0.02) for s in range(3)]
    sel = select({"shortcut": shortcut, "lungs": lungs})
    assert sel["candidates"]["shortcut"]["mean"]["auc"] > sel["candidates"]["lungs"]["mean"]["auc"]
    assert not sel["candidates"]["shortcut"]["looks_at_lungs"] and sel["candidates"]["lungs"]["looks_at_lungs"]
    assert sel["chosen"] == "lungs" and sel["bound"] == LUNG_BOUND
    text = format_selection(sel)
    assert "choice (highest mean validation AUC among those that look at the lungs): lungs" in text
    assert "lungs minus shortcut, paired by seed (0, 1, 2)" in text


def test_select_chooses_none_when_no_candidate_looks_at_the_lungs_or_outside_changes_more(tmp_path):
    from pneumolib.studies.candidates import select

    a = [_run_folder(tmp_path, "a", s, 0.9, outside_flips=0.3) for s in range(2)]
    b = [_run_folder(tmp_path, "b", s, 0.9, outside_flips=0.05, outside=0.3, inside=0.1) for s in range(2)]
    sel = select({"a": a, "b": b})
    assert sel["chosen"] is None and not sel["candidates"]["b"]["looks_at_lungs"]


def test_select_never_chooses_an_unaudited_candidate(tmp_path):
    from pneumolib.studies.candidates import select

    a = [_run_folder(tmp_path, "a", s, 0.9, outside_flips=0.0) for s in range(2)]
    (a[1] / "shortcuts_val.json").unlink()
    sel = select({"a": a})
    assert sel["chosen"] is None and not sel["candidates"]["a"]["audited"]
