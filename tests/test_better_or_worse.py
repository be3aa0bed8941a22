"""Notebook 00's 'better or worse': each entry against the entry it changed (the log's chain), paired seed by seed on
the same films, NORMAL recall, PNEUMONIA recall and balanced accuracy, read by the verdict rule."""

import pandas as pd
import pytest

from pneumolib.notebook import summary
from pneumolib.studies import verdicts as V

N = 60  # films per class


def film_run(
    tmp_path,
    entry,
    seed,
    normal_recall,
    pneu_recall=0.9,
    epochs=4,
    weights="random init (ImageNet weights unavailable)",
    val_cm=None,
):
    d = tmp_path / entry / f"seed{seed}"
    d.mkdir(parents=True)
    lines = ["path,patient,split,label,p_pneumonia,prediction"]
    for label, recall, right, wrong in (("NORMAL", normal_recall, 0.2, 0.9), ("PNEUMONIA", pneu_recall, 0.9, 0.2)):
        k = round(recall * N)
        for i, p in enumerate([right] * k + [wrong] * (N - k)):
            lines.append(
                f"/x/{label}/{i}.jpeg,{label}-{i // 2},test,{label},{p},{'PNEUMONIA' if p >= 0.5 else 'NORMAL'}"
            )
    (d / "scores_test.csv").write_text("\n".join(lines) + "\n")
    cfg = {"seed": seed, "epochs": epochs, "max_train_images": 1500, "image_size": 128}
    m = {"config": cfg, "run_dir": str(d), "weights": weights}
    if val_cm:
        m["val"] = {"confusion_matrix": val_cm}
    return m


def entry_runs(tmp_path, entry, normal, pneu=0.9, **kw):
    return [film_run(tmp_path, entry, s, r, pneu + 0.01 * s, **kw) for s, r in enumerate(normal)]


def test_each_entry_is_read_against_the_entry_it_changed_not_the_baseline(tmp_path):
    runs = {
        "01": entry_runs(tmp_path, "01", [0.90, 0.92, 0.88]),
        "02": entry_runs(tmp_path, "02", [0.40, 0.45, 0.35]),  # far below 01
        "03": entry_runs(tmp_path, "03", [0.60, 0.65, 0.55]),  # above 02, below 01
    }
    t = summary.better_or_worse(runs)
    assert t.loc["02", "against"] == "01" and t.loc["03", "against"] == "02"
    assert t.loc["02", "NORMAL recall: better or worse?"] == "worse"
    assert t.loc["03", "NORMAL recall: better or worse?"] == "better"  # against 02, the entry it changed
    diff = t.loc["03", "NORMAL recall: this minus the other"]
    assert diff.startswith("0.200 [") and "-" not in diff.split("[")[1]  # mean 0.20, its interval above 0
    # PNEUMONIA recall did not move (the same films right): no effect to decide, said as cannot tell
    assert t.loc["03", "PNEUMONIA recall: better or worse?"].startswith(V.CANNOT_TELL)
    assert t.loc["04", "NORMAL recall: better or worse?"] == V.NOT_TESTED  # no runs: not measured
    assert "NORMAL recall: better than the entry it changed: 03 (against 02)" in summary.what_changed(t)


def test_balanced_accuracy_is_the_mean_of_the_two_recalls_paired(tmp_path):
    a = entry_runs(tmp_path, "01", [0.90, 0.80, 0.70], pneu=0.6)
    b = entry_runs(tmp_path, "02", [0.50, 0.50, 0.50], pneu=0.6)
    e = V.balanced_effect(b, a)
    assert e.per_seed == pytest.approx(((0.5 - 0.9) / 2, (0.5 - 0.8) / 2, (0.5 - 0.7) / 2))
    assert e.point == pytest.approx(-0.15) and e.low < e.point < e.high


def test_random_init_collapses_and_budgets_are_said(tmp_path):
    collapsed = [[0, 100], [0, 100]]  # every validation film called PNEUMONIA
    runs = {
        "04": entry_runs(tmp_path, "04", [0.90, 0.92, 0.88]),
        "05": [
            film_run(tmp_path, "05", s, 0.5, val_cm=collapsed if s < 2 else None, epochs=6) for s in range(3)
        ],  # asked for ImageNet weights, trained from random init, at another budget
    }
    t = summary.better_or_worse(runs)
    assert t.loc["05", "experiment"] == "pretrained (random init: ImageNet weights missing)"
    assert "another budget" in t.loc["05", "note"]
    assert "collapsed seed(s) of this entry: 0, 1" in t.loc["05", "note"]
    assert "random init" not in t.loc["06", "experiment"]  # no runs: nothing to mark


def test_the_table_shows_as_parts_of_at_most_eight_columns(tmp_path):
    from pneumolib.notebook.display import MAX_COLUMNS, table_parts

    t = summary.better_or_worse(
        {"01": entry_runs(tmp_path, "01", [0.9, 0.9]), "02": entry_runs(tmp_path, "02", [0.5, 0.6])}
    )
    parts = table_parts(t)
    assert len(parts) == 4 and all(len(p.columns) + 1 <= MAX_COLUMNS for _, p in parts)
    assert isinstance(t, pd.DataFrame) and list(t.index[:2]) == ["02", "03"]


def test_an_entry_on_the_same_trained_networks_says_so_not_cannot_tell_regression(tmp_path):
    """Regression (issue 47 audit): entry 08 evaluates entry 07's networks (an adopted twin run, its checkpoint
    copied with shutil.copy2), so its difference from 07 is 0 by construction, yet the table said 'cannot tell: the
    effect sits on the threshold'. It now says the networks are the same; different checkpoints still read as before."""
    import shutil

    runs = {"07": entry_runs(tmp_path, "07", [0.6, 0.7, 0.5]), "08": entry_runs(tmp_path, "08", [0.6, 0.7, 0.5])}
    for a, b in zip(runs["07"], runs["08"]):
        (tmp_path / "ckpt.pt").write_bytes(b"weights of seed %d" % a["config"]["seed"])
        shutil.copy2(tmp_path / "ckpt.pt", f"{a['run_dir']}/checkpoint.pt")
        shutil.copy2(tmp_path / "ckpt.pt", f"{b['run_dir']}/checkpoint.pt")
    assert summary.same_networks(runs["08"], runs["07"])
    t = summary.better_or_worse(runs)
    assert t.loc["08", "NORMAL recall: better or worse?"] == summary.SAME_NETWORKS
    assert "the same trained networks as entry 07 (no new training)" in t.loc["08", "note"]
    assert "no new training): 08;" in summary.what_changed(t)
    # another checkpoint for one seed: not the same networks, and no claim of it
    (tmp_path / "08" / "seed1" / "checkpoint.pt").write_bytes(b"retrained")
    assert not summary.same_networks(runs["08"], runs["07"])
    t = summary.better_or_worse(runs)
    assert t.loc["08", "NORMAL recall: better or worse?"].startswith(V.CANNOT_TELL)
    assert "same trained networks" not in t.loc["08", "note"]
    assert not summary.same_networks(runs["08"], [])  # nothing to compare: never 'the same'


def test_better_or_worse_lists_say_when_an_entry_is_random_init(tmp_path):
    runs = {
        "04": entry_runs(tmp_path, "04", [0.40, 0.45, 0.35]),
        "05": entry_runs(tmp_path, "05", [0.90, 0.92, 0.88]),  # asked for ImageNet weights, got random init
    }
    text = summary.what_changed(summary.better_or_worse(runs))
    assert "05 (against 04; random init, so not about ImageNet weights)" in text
