"""Entry 09's NORMAL-target Grad-CAM: recorded by run_experiment beside the run's own maps only for an entry whose
claims read it, reused while nothing changed, and read by the 09 NORMAL-target verdict rows."""

import json
from dataclasses import replace

import pytest

from pneumolib.studies import target_maps
from pneumolib.studies import verdicts as V
from pneumolib.studies.catalogue import get_config


@pytest.fixture(scope="module")
def run_09(tmp_path_factory, fixture_data):
    from pneumolib.studies.experiment import run_experiment

    out = tmp_path_factory.mktemp("run") / "09"
    cfg = replace(get_config("09"), epochs=2)
    kw = dict(
        data=fixture_data, profile="fixture", cam_per_class=1, focus_per_class=3, on_missing_weights="random_init"
    )
    return run_experiment(cfg, None, out, **kw)


def _normal_target_rows(metrics):
    return [r for r in V.judge_entry("09", [metrics]) if "NORMAL-target" in r["quantity"]]


def test_entry_09_records_normal_target_maps_and_its_rows_read_them(run_09):
    m = json.loads(run_09.run_dir.joinpath("metrics.json").read_text())
    by_target = m["lung_focus_by_target"]
    assert set(by_target) == {"NORMAL", "PNEUMONIA"} and by_target["PNEUMONIA"] == m["lung_focus"]
    assert by_target["NORMAL"]["NORMAL"]["lung_lift"] != by_target["PNEUMONIA"]["NORMAL"]["lung_lift"]
    checks = m["gradcam_by_target"]["NORMAL"]  # the NORMAL-target maps' own checks ran
    assert checks["target"] == "NORMAL" and checks["road"] and checks["randomisation_rank_corr"]
    m["run_dir"] = str(run_09.run_dir)
    m["gradcam"]["maps_pass"] = True  # judge the lifts (the fixture's maps may fail ROAD: not what is tested here)
    checks["maps_pass"] = True
    rows = _normal_target_rows(m)
    assert len(rows) == 2 and all(r["n"] == 1 for r in rows)
    lung = next(r for r in rows if r["quantity"].startswith("lung lift"))
    assert lung["mean"] == pytest.approx(by_target["NORMAL"]["NORMAL"]["lung_lift"])


def test_an_old_run_without_them_says_not_recorded_not_a_verdict(run_09):
    m = dict(run_09.metrics, run_dir=str(run_09.run_dir))
    m.pop("lung_focus_by_target")
    m["gradcam"] = dict(m["gradcam"], maps_pass=True)
    m["gradcam_by_target"] = {"NORMAL": {"maps_pass": True}}
    for row in _normal_target_rows(m):
        assert row["verdict"] == V.NOT_TESTED and row["note"].startswith("not recorded: re-run the entry")
        assert "not tested (not recorded: re-run the entry" in V.sentence(row)


def test_a_reused_run_keeps_them_without_another_grad_cam_pass(run_09, fixture_data, monkeypatch):
    from pneumolib.studies.experiment import run_experiment

    before = run_09.metrics["lung_focus_by_target"]
    monkeypatch.setattr(target_maps, "explain_predictor", lambda *a, **k: pytest.fail("recomputed"))
    again = run_experiment(
        replace(run_09.config, epochs=2, pretrained=True),
        None,
        run_09.run_dir,
        data=fixture_data,
        profile="fixture",
        cam_per_class=1,
        focus_per_class=3,
        on_missing_weights="random_init",
    )
    assert json.loads(json.dumps(before)) == again.metrics["lung_focus_by_target"]
    assert json.loads(json.dumps(run_09.metrics["gradcam_by_target"])) == again.metrics["gradcam_by_target"]


@pytest.mark.parametrize("own, normal", [(True, False), (False, True)])
def test_normal_target_rows_are_judged_by_the_normal_target_maps_checks_regression(run_09, own, normal):
    # 09's NORMAL-target rows were let through by the run's own P(PNEUMONIA)-target maps' checks: no check had run
    # on the maps they read
    m = json.loads(json.dumps(dict(run_09.metrics, run_dir=str(run_09.run_dir))))
    m["gradcam"]["maps_pass"] = own
    m["gradcam_by_target"]["NORMAL"]["maps_pass"] = normal
    rows = _normal_target_rows(m)
    assert len(rows) == 2
    assert all((r["verdict"] == V.MAPS_NOT_FAITHFUL) == (not normal) for r in rows), [r["verdict"] for r in rows]


def test_other_entries_pay_for_no_second_pass(monkeypatch):
    monkeypatch.setattr(target_maps, "explain_predictor", lambda *a, **k: pytest.fail("computed"))
    for entry in ("01", "04", "08", "10"):
        assert target_maps.cam_targets(entry) == ()
        assert target_maps.other_targets(get_config(entry), None, None, None, 3, {}, str, False) == ({}, {}, None)
    assert target_maps.cam_targets("09") == ("NORMAL", "PNEUMONIA")


def test_a_grad_cam_cache_is_not_reused_after_any_module_of_the_package_changes_regression(tmp_path):
    # the cache key hashed two facade modules (analysis/cam.py, data/lungs.py): the ROAD fix changed only
    # cam_checks.py, so a run's kept Grad-CAM results could keep the 'pass' the fixed check no longer gives
    import shutil
    from pathlib import Path

    from pneumolib.studies.target_maps import explain_code

    pkg = Path(explain_code.__code__.co_filename).resolve().parents[1]
    a, b = tmp_path / "a" / "pneumolib", tmp_path / "b" / "pneumolib"
    for d in (a, b):
        shutil.copytree(pkg, d, ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.npz", "*.png", "*.jpeg"))
    assert explain_code(a) == explain_code(pkg)  # the same source: the same digest
    checks = b / "analysis" / "cam_checks.py"
    checks.write_text(checks.read_text() + "\n# a change to the maps' checks only\n")
    assert explain_code(b) != explain_code(a)
