"""The recipe-candidate table as a command: recomputed from finished run folders, paired by seed."""
import json
import shutil
from dataclasses import replace

import pytest

from pneumolib import candidates
from pneumolib.checkpoint import save_checkpoint
from pneumolib.cli import main
from pneumolib.evaluate import point_metrics
from pneumolib.stress import stress_test


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
            save_checkpoint(d / "checkpoint.pt", p.model, replace(p.config, seed=seed), min(0.99, p.threshold + shift),
                            extra)
            groups[name].append(d)
    return groups


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
