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
    m["run_dir"] = str(run_09.run_dir)
    m["gradcam"]["maps_pass"] = True  # judge the lifts (the fixture's maps may fail ROAD: not what is tested here)
    rows = _normal_target_rows(m)
    assert len(rows) == 2 and all(r["n"] == 1 for r in rows)
    lung = next(r for r in rows if r["quantity"].startswith("lung lift"))
    assert lung["mean"] == pytest.approx(by_target["NORMAL"]["NORMAL"]["lung_lift"])


def test_an_old_run_without_them_says_not_recorded_not_a_verdict(run_09):
    m = dict(run_09.metrics, run_dir=str(run_09.run_dir))
    m.pop("lung_focus_by_target")
    m["gradcam"] = dict(m["gradcam"], maps_pass=True)
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


def test_other_entries_pay_for_no_second_pass(monkeypatch):
    monkeypatch.setattr(target_maps, "explain_predictor", lambda *a, **k: pytest.fail("computed"))
    for entry in ("01", "04", "08", "10"):
        assert target_maps.cam_targets(entry) == ()
        assert target_maps.other_targets(get_config(entry), None, None, None, 3, {}, str, False) == ({}, None)
    assert target_maps.cam_targets("09") == ("NORMAL", "PNEUMONIA")
