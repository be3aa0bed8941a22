"""The committed notebooks: paired with their jupytext scripts, prose numbers backed by outputs, no machine paths;
and a papermill render of one notebook on the fixture with parameter overrides."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
NUMBER = re.compile(r"\b\d+\.\d{2,}\b")  # two or more decimals: a measured number, not "±10°" or "0.8"
ABSOLUTE = re.compile(r"/(work|home|root)/")
TEXT_TYPES = ("text/plain", "text/html", "text/markdown")


def _ids(paths):
    return [p.stem[:2] for p in paths]


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def _output_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif o.get("output_type") == "error":
            parts.append(o.get("evalue", ""))
            parts.extend(o.get("traceback", []))
        for mime in TEXT_TYPES:  # images are base64: a '/work/' in them is noise, not a path
            v = o.get("data", {}).get(mime)
            if v:
                parts.append(v if isinstance(v, str) else "".join(v))
    return "\n".join(parts)


def test_every_numbered_notebook_is_there():
    assert len(NOTEBOOKS) == 11 and NOTEBOOKS[0].name == "00_summary.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_and_its_percent_script_are_in_sync(path):
    script = path.with_suffix(".py")
    assert script.is_file(), f"{script.name} missing: pair it with jupytext --set-formats ipynb,py:percent"
    nb, py = jupytext.read(path), jupytext.read(script)
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    assert _cells(nb) == _cells(py), f"{path.name} and {script.name} differ: run jupytext --sync {path.name}"
    # the papermill convention: exactly one parameters cell, and no injected values left over from a render
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert sum("parameters" in t for t in tags) == 1
    assert not any("injected-parameters" in t for t in tags)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_prose_numbers_are_printed_by_an_output_above(path):
    nb = nbformat.read(path, as_version=4)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    above = ""
    unbacked = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            above += "\n" + _output_text(cell)
        elif i > first_code:
            for num in NUMBER.findall(cell.source):
                if not re.search(rf"(?<![\d.]){re.escape(num)}(?!\d)", above):
                    unbacked.append(f"cell {i}: {num}")
    assert not unbacked, f"{path.name}: numbers in prose that no output above prints: {unbacked}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_outputs_name_no_absolute_paths_and_hold_no_errors(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        text = _output_text(cell)
        assert not ABSOLUTE.search(text), f"{path.name} cell {i}: {ABSOLUTE.search(text).group(0)} in its output"
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", [])), f"{path.name} cell {i}"


def _require_render(path) -> None:
    """A notebook added this round has no outputs until the series issue renders it: reported while RENDER_PENDING,
    a failure after."""
    nb = nbformat.read(path, as_version=4)
    if not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
        if RENDER_PENDING:
            pytest.xfail(f"{path.name} is new this round and not rendered yet: the series issue renders it")
        pytest.fail(f"{path.name} has no outputs: render it (tools/render_notebooks.sh)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_rendered_notebooks_state_their_provenance(path):
    _require_render(path)
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(_output_text(c) for c in nb.cells[:8])
    assert re.search(r"pneumolib \S+, commit \S+; profile \w+; device \S+; \d+ seeds?: ", text), path.name
    assert "wall time:" in _output_text(nb.cells[-1])


SERIES_SEEDS = 5  # this round's series issue: five seeds per entry (bars/series5), the render script's default


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_the_committed_render_rests_on_five_seeds_per_entry(path):
    # a render without PNEUMOLIB_SEEDS once meant three seeds, silently: the provenance line says how many it used
    _require_render(path)
    text = "\n".join(_output_text(c) for c in nbformat.read(path, as_version=4).cells[:8])
    m = re.search(r"; device \S+; (\d+) seeds?: ", text)
    assert m, f"{path.name}: no seed count in its provenance line"
    if int(m.group(1)) != SERIES_SEEDS:
        if RENDER_PENDING:
            pytest.xfail(f"{path.name} rendered with {m.group(1)} seeds until the series issue renders five")
        pytest.fail(f"{path.name} rendered with {m.group(1)} seeds, not {SERIES_SEEDS}")


def _provenance_commit(path) -> str:
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(_output_text(c) for c in nb.cells[:8])
    m = re.search(r"pneumolib \S+, commit (\S+);", text)
    assert m, f"{path.name}: no provenance line"
    return m.group(1)


def test_all_notebooks_were_rendered_at_one_commit():
    for p in NOTEBOOKS:
        _require_render(p)
    commits = {p.name: _provenance_commit(p) for p in NOTEBOOKS}
    if len(set(commits.values())) > 1 and RENDER_PENDING:  # a part rendered ahead of the round's series render
        pytest.xfail(f"rendered at different commits until the series issue renders every notebook: {commits}")
    assert len(set(commits.values())) == 1, f"rendered at different commits: {commits}"


# True while a round's code issues change the package before the round's series issue renders every notebook again
# (DEVELOPERS.md: "until then the staleness test may report instead of fail"); the series issue sets it to False
# in the commit that holds the render, so from then on a stale output fails again.
RENDER_PENDING = True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_outputs_are_not_stale(path):
    # the outputs show the package and notebook sources as they are now: the render's commit was clean, and the
    # sources digest it printed (pneumolib/ and notebooks/*.py in git's tree at that commit) is HEAD's, so nothing
    # there changed since (tools/render_notebooks.sh renders them again); needs no history, only HEAD
    from pneumolib.notebook.series import sources_digest, stale_paths

    _require_render(path)
    commit = _provenance_commit(path)
    assert not commit.endswith("+dirty") and commit != "unknown", f"{path.name}: rendered from {commit}"
    m = re.search(r"; sources (\w+)\n", "\n".join(_output_text(c) for c in nbformat.read(path, as_version=4).cells[:8]))
    assert m, f"{path.name}: no sources digest in its provenance line"
    if m.group(1) != sources_digest("HEAD"):
        why = f"{path.name} was rendered at {commit}; changed since: {stale_paths(commit)[:8]}"
        if RENDER_PENDING:  # this round's code issues land before its series render: report, do not fail
            pytest.xfail(f"stale until the series issue renders this round: {why}")
        pytest.fail(why)


def test_the_readme_describes_the_recipe_as_notebook_10s_shortcut_audit_found_it_regression():
    # the README called the recipe "the lungs only" while notebook 10's audit printed "this model READS OUTSIDE THE
    # LUNGS": the README's words about where the recipe looks follow the rendered audit, whichever way it came out
    nb10 = next(p for p in NOTEBOOKS if p.name.startswith("10_"))
    _require_render(nb10)
    text = "\n".join(_output_text(c) for c in nbformat.read(nb10, as_version=4).cells)
    readme = (NB_DIR.parent / "README.md").read_text().lower()
    outside, inside = "reads outside the lungs" in text.lower(), "this model looks at the lungs" in text.lower()
    assert outside or inside, "notebook 10 shows no shortcut-audit verdict"
    assert "lungs only" not in readme and "only the lungs" not in readme
    said = "reads outside the lungs" in readme if outside else "looks at the lungs" in readme
    if not said:
        if RENDER_PENDING:
            pytest.xfail("the README's findings are rewritten from the series render")
        pytest.fail("README.md does not say what notebook 10's shortcut audit found about the recipe")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebooks_stay_under_one_megabyte_and_show_no_empty_table(path):
    assert path.stat().st_size < 1_000_000, f"{path.name}: {path.stat().st_size / 1e6:.2f} MB"
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        assert "Empty DataFrame" not in _output_text(cell), f"{path.name} cell {i}: an empty table"


def test_papermill_renders_a_notebook_on_the_fixture_with_overrides(tmp_path):
    out = tmp_path / "02.ipynb"
    runs = tmp_path / "runs"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PNEUMOLIB_")}
    env.update(TQDM_DISABLE="1", OMP_NUM_THREADS="1", PNEUMOLIB_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(NB_DIR / "02_2024-05-13_central_focus_normal.ipynb"),
            str(out),
            "-p",
            "PROFILE",
            "smoke",
            "-p",
            "SEEDS",
            "1,2",
            "-p",
            "RUNS",
            str(runs),
            "-p",
            "BUDGET",
            "epochs=1,max_train_images=40",
            "--cwd",
            str(NB_DIR),
            "--log-level",
            "WARNING",
        ],
        check=True,
        env=env,
        timeout=900,
    )
    nb = nbformat.read(out, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    injected = next(i for i, t in enumerate(tags) if "injected-parameters" in t)
    assert "parameters" in tags[injected - 1]  # papermill put the overrides right after the defaults
    text = "\n".join(_output_text(c) for c in nb.cells)
    assert "profile smoke" in text and "2 seeds: 1, 2" in text
    assert "budget changed to epochs=1, max_train_images=40" in text
    assert "1 ep x 40 img" in text and "2 ep x all img" not in text  # every seed at the one budget
    for seed in (1, 2):
        m = json.loads((runs / "02_central_focus_normal" / f"seed{seed}" / "metrics.json").read_text())
        assert (m["config"]["epochs"], m["config"]["max_train_images"]) == (1, 40)
    assert (runs / "02_central_focus_normal" / "seed1" / "metrics.json").is_file()
    assert "verdict" in text.lower() and "wall time:" in text
    # the headline under the title was filled in by the verdict cell (a display updated in place), not left pending
    head = next(c for c in nb.cells if c.cell_type == "code" and "nb.headline(" in c.source)
    shown = _output_text(head)
    assert shown.count("**Finding.**") == 1 and "2 seeds" in shown and "[Log vs re-run]" in shown
    assert "if you see this line" not in shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_notebook_opens_with_its_headline_under_the_title(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = next(c for c in nb.cells if c.cell_type == "code")  # the first code cell, before the parameters
    assert f'nb.headline("{path.stem[:2]}")' in code.source and "parameters" not in code.metadata.get("tags", [])
    filler = "summary.show_claims(" if path.stem.startswith("00") else f'nb.log_vs_rerun("{path.stem[:2]}"'
    assert filler in "".join(c.source for c in nb.cells)  # the cell that fills it


def test_tables_are_shown_whole_in_notebooks():
    import pandas as pd

    from pneumolib.notebook import helpers as H

    with pd.option_context("display.max_columns", 20, "display.max_rows", 60):
        H.use_notebook_style()
        wide = pd.DataFrame([[0.5] * 25] * 14)
        assert "..." not in wide.to_string() and "[14 rows x 25 columns]" not in repr(wide)
    pd.reset_option("display.max_columns"), pd.reset_option("display.max_rows")
    pd.reset_option("display.max_colwidth"), pd.reset_option("display.width")


# --- the notebook helpers behind those cells -------------------------------------------------------------------
def _metrics(seed, acc, best=2, last_val_acc=0.5):
    hist = [
        {
            "epoch": e,
            "train_loss": 1.0,
            "val_loss": 0.5 if e == best else 0.9,
            "val_auc": 0.9,
            "val_acc": 0.95 if e == best else last_val_acc,
        }
        for e in (1, 2, 3)
    ]
    t = {
        "accuracy": acc,
        "sensitivity": acc,
        "specificity": acc,
        "auc": 0.99,
        "ci95": {k: [acc - 0.05, acc + 0.05] for k in ("accuracy", "sensitivity", "specificity", "auc")},
    }
    return {
        "config": {"seed": seed},
        "test": t,
        "threshold": 0.5,
        "best_epoch": best,
        "history": hist,
        "weights": "random init",
    }


def test_seed_table_has_one_row_per_seed_then_mean_and_range_naming_the_seed_count():
    from pneumolib.notebook import helpers as nb

    df = nb.seed_table([_metrics(0, 0.90), _metrics(1, 0.80), _metrics(2, 0.85)])
    assert list(df.index) == ["seed 0", "seed 1", "seed 2", "mean of 3 seeds", "range over 3 seeds"]
    assert df.loc["mean of 3 seeds", "accuracy"] == "0.850"
    assert df.loc["range over 3 seeds", "NORMAL recall"] == "0.800-0.900"
    assert df.loc["seed 1", "accuracy"] == "0.800 (0.75-0.85)"


def test_seed_table_shows_the_last_epochs_test_metrics_and_flags_a_kept_first_epoch():
    from pneumolib.notebook import helpers as nb

    a, b, c = _metrics(0, 0.90, best=1), _metrics(1, 0.80, best=3), _metrics(2, 0.85, best=2)
    for m in (a, b, c):
        m["config"]["epochs"] = 3
    a["test_last_epoch"] = {"epoch": 3, "accuracy": 0.70, "specificity": 0.40}
    b["test_last_epoch"] = {"epoch": 3, "same_as_kept": True}
    a["val"] = {"auc": 0.95}  # kept its first epoch, and learned
    df = nb.seed_table([a, b, c])
    # untrained is read from validation evidence, not from the kept epoch's number
    assert df.loc["seed 0", "kept epoch"] == "1" and df.loc["seed 2", "kept epoch"] == "2"
    a["val"] = {"auc": 0.55}
    assert nb.seed_table([a, b, c]).loc["seed 0", "kept epoch"] == "1 (UNTRAINED)"
    col = "last epoch: accuracy / NORMAL recall"
    assert df.loc["seed 0", col] == "0.700 / 0.400 (epoch 3)" and df.loc["seed 1", col] == "= kept"
    assert df.loc["seed 2", col].startswith("not kept")


def test_a_one_row_ablation_table_prints_0_610_not_0_61_regression(capsys):
    # the matched baseline's table (one row) printed its stress NORMAL recall as 0.61 beside 0.902 and 0.721
    from pneumolib.notebook import helpers as nb

    row = {
        "name": "baseline",
        "seeds": 3,
        "folders": {"accuracy": 0.902, "specificity": 0.721, "auc": 0.987},
        "stress": {"stress_accuracy_ext": 0.827, "stress_specificity": 0.61, "stress_auc": 0.976},
    }
    nb.ablation_table([row])
    text = capsys.readouterr().out
    assert "0.610" in text and "0.902" in text and " 3 " in text  # the seed count stays a count


def test_checkpoint_table_keeps_the_best_and_the_last_epoch():
    from pneumolib.notebook import helpers as nb

    df = nb.checkpoint_table([_metrics(0, 0.9, best=2, last_val_acc=0.24)])
    row = df.loc["seed 0"]
    assert (row["best epoch"], row["last epoch"]) == (2, 3)
    assert (row["val acc@0.5 (best)"], row["val acc@0.5 (last)"]) == (0.95, 0.24)


def test_epochs_that_call_every_val_film_one_class_are_named():
    from pneumolib.data.dataset import Sample
    from pneumolib.notebook import helpers as nb

    val = [Sample(f"/x/{i}.png", int(i < 3), f"p{i}", "val") for i in range(4)]  # 3 PNEUMONIA, 1 NORMAL
    hist = [{"epoch": 1, "val_acc": 0.75}, {"epoch": 2, "val_acc": 0.5}, {"epoch": 3, "val_acc": 0.25}]
    lines = nb.one_class_epochs(hist, val)
    assert any("epoch(s) 1:" in ln and "every val film called PNEUMONIA" in ln for ln in lines)
    assert any("epoch(s) 3:" in ln and "every val film called NORMAL" in ln for ln in lines)
    assert not any("epoch(s) 2" in ln for ln in lines)


def test_seeds_parse_from_papermill_strings_lists_and_ints():
    from pneumolib.notebook.series import seed_list

    assert seed_list("0,1,2") == seed_list([0, 1, 2]) == seed_list("[0, 1, 2]") == [0, 1, 2]
    assert seed_list(3) == [3] and seed_list(None) == [0]


def test_tidy_replaces_machine_paths():
    from pneumolib.notebook import series

    repo = Path(series.__file__).resolve().parents[2]
    text = series.tidy(f"reusing {repo}/runs/01_baseline/seed0/checkpoint.pt; cache {Path.home()}/.cache/torch")
    assert str(repo) not in text and str(Path.home()) not in text
    assert "./runs/01_baseline/seed0/checkpoint.pt" in text and "~/.cache/torch" in text


def test_a_series_prints_its_run_folders_by_the_runs_parameter_not_their_path_regression(tmp_path, quiet_log):
    # regression: a render with RUNS outside the repository printed '/work/runs/r4/05_pretrained/...' in its log lines
    from pneumolib.notebook import series

    s = series.start(None, "smoke", "cpu", [0], runs=tmp_path / "elsewhere")
    assert (
        s.tidy(f"reusing {tmp_path}/elsewhere/05_pretrained/seed0/explanation.npz")
        == "reusing RUNS/05_pretrained/seed0/explanation.npz"
    )


def test_a_render_is_stale_when_the_package_or_a_notebook_source_changed_since_its_commit(tmp_path):
    import subprocess

    from pneumolib.notebook.series import git_commit, sources_digest, stale_paths

    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    (tmp_path / "pneumolib").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pneumolib" / "a.py").write_text("x = 1\n")
    (tmp_path / "notebooks" / "01.py").write_text("# %%\n")
    (tmp_path / "README.md").write_text("r\n")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "a"]):
        subprocess.run(git + cmd, cwd=tmp_path, check=True)
    rendered = git_commit(tmp_path)
    digest = sources_digest("HEAD", tmp_path)
    assert stale_paths(rendered, tmp_path) == []
    (tmp_path / "README.md").write_text("other\n")  # not what a render shows
    (tmp_path / "notebooks" / "01.ipynb").write_text("{}")  # the render's own output
    subprocess.run(git + ["commit", "-qam", "b"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "."], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "c"], cwd=tmp_path, check=True)
    assert stale_paths(rendered, tmp_path) == [] and sources_digest("HEAD", tmp_path) == digest
    (tmp_path / "pneumolib" / "a.py").write_text("x = 2\n")
    subprocess.run(git + ["commit", "-qam", "d"], cwd=tmp_path, check=True)
    assert stale_paths(rendered, tmp_path) == ["pneumolib/a.py"]
    assert sources_digest("HEAD", tmp_path) != digest == sources_digest(rendered, tmp_path)
    (tmp_path / "notebooks" / "01.py").write_text("# %% changed\n")
    subprocess.run(git + ["commit", "-qam", "e"], cwd=tmp_path, check=True)
    assert sources_digest("HEAD", tmp_path) not in (digest, sources_digest("HEAD~1", tmp_path))
    assert sources_digest("HEAD", tmp_path / "nowhere") == "unknown"
    assert stale_paths(rendered + "+dirty", tmp_path) and stale_paths("0000000", tmp_path)


def test_git_commit_is_unknown_outside_git_and_dirty_only_for_code(tmp_path):
    import shutil

    from pneumolib.notebook.series import git_commit

    assert git_commit(tmp_path) == "unknown"
    if shutil.which("git") is None:
        pytest.skip("no git")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "notebooks" / "a.ipynb").write_text("{}\n")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "c"]):
        subprocess.run(git + cmd, cwd=tmp_path, check=True)
    clean = git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{7,}", clean)
    (tmp_path / "notebooks" / "a.ipynb").write_text('{"rendered": 1}\n')
    assert git_commit(tmp_path) == clean  # a render rewriting notebooks is not a code change
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"


def test_figures_are_legible_and_metric_axes_zoom_to_the_data():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pneumolib.analysis import plots
    from pneumolib.analysis.evaluate import Scores
    from pneumolib.data.dataset import Sample
    from pneumolib.notebook import helpers as nb

    nb.use_notebook_style()
    assert plt.rcParams["figure.dpi"] >= 110
    rows = [
        {"name": n, "accuracy": v, "ci95": {"accuracy": [v - 0.01, v + 0.01]}, "n": 400}
        for n, v in (("a", 0.93), ("b", 0.96))
    ]
    lo, hi = plots.plot_comparison(rows, metrics=("accuracy",)).axes[0].get_xlim()
    assert lo > 0.8 and hi < 1.0  # a 0-1 axis would hide 0.93 against 0.96
    s = Scores([Sample(f"/x/{i}.png", i % 2, f"p{i}", "test") for i in range(20)], np.linspace(0, 1, 20))
    assert plots.plot_scores(s, 0.5).axes[0].get_ylabel() == "images"
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "val_auc": 0.9, "val_acc": 0.8} for e in range(1, 7)]
    fig = plots.plot_history(hist, 3)
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())
    plt.close("all")


def test_one_class_epochs_read_the_predicted_share_and_never_guess_on_a_balanced_split_regression():
    # regression: on a balanced val split (the fixture's 12/12) every epoch at 50% accuracy was reported as
    # "every val film called PNEUMONIA", whichever class the model actually called
    from pneumolib.data.dataset import Sample
    from pneumolib.notebook import helpers as nb

    val = [Sample(f"/x/{i}.png", int(i < 2), f"p{i}", "val") for i in range(4)]  # balanced
    hist = [
        {"epoch": 1, "val_acc": 0.5, "val_share_pneumonia": 0.0},
        {"epoch": 2, "val_acc": 0.5, "val_share_pneumonia": 0.5},
        {"epoch": 3, "val_acc": 0.5, "val_share_pneumonia": 1.0},
    ]
    lines = nb.one_class_epochs(hist, val)
    assert any("epoch(s) 1:" in ln and "NORMAL" in ln for ln in lines)
    assert any("epoch(s) 3:" in ln and "PNEUMONIA" in ln for ln in lines)
    assert not any("epoch(s) 2" in ln for ln in lines)
    old = nb.one_class_epochs([{"epoch": 1, "val_acc": 0.5}], val)  # an older history: accuracy only
    assert old and "one class" in old[0] and "PNEUMONIA" not in old[0]


def test_seed_budget_parses_and_refuses_what_does_not_size_a_run():
    from pneumolib.notebook import series as nb

    assert nb.parse_budget("") == {} and nb.parse_budget(None) == {}
    assert nb.parse_budget("epochs=3, max_train_images=1000") == {"epochs": 3, "max_train_images": 1000}
    with pytest.raises(ValueError, match="unknown field"):
        nb.parse_budget("epochs=3,lr=1")
    with pytest.raises(ValueError, match="NAME=INTEGER"):
        nb.parse_budget("epochs")


def test_the_budget_applies_to_every_seed_alike(capsys, quiet_log):
    from pneumolib.notebook import series

    s = series.start(None, "fixture", "cpu", "3,4,5", "epochs=2")
    assert "every seed trains with the 'fixture' profile's budget changed to epochs=2" in capsys.readouterr().out
    assert s.budget == {"epochs": 2}
    s = series.start(None, "fixture", "cpu", "3,4,5")  # no budget: every seed gets the profile's
    assert s.budget == {}


def test_the_final_model_says_when_a_render_budget_replaces_the_recipe_own(capsys, quiet_log):
    from pneumolib.notebook import series
    from pneumolib.studies.catalogue import get_config

    cfg = get_config("recommended")
    own = series.final_budget(series.start(None, "cpu", "cpu", "0"), cfg)
    out = capsys.readouterr().out
    assert own["epochs"] == 20 and own["max_train_images"] is None
    assert "the recipe's own 'cpu' budget: 20 epochs of every training image" in out and "not trained" not in out
    cut = series.final_budget(series.start(None, "cpu", "cpu", "0", "epochs=4,max_train_images=1500"), cfg)
    out = capsys.readouterr().out
    assert cut["epochs"] == 4 and cut["max_train_images"] == 1500
    assert "this render's one budget, 4 epochs of 1500 training images" in out
    assert "own 'cpu' budget (20 epochs of every training image per epoch at 128 px, batch 32) is not trained" in out


def test_two_series_keep_their_own_settings_no_module_state(quiet_log):
    from pneumolib.notebook import series

    a = series.start(None, "fixture", "cpu", "0,1", "epochs=2")
    b = series.start(None, "smoke", "cpu", "0,1")
    assert a.budget == {"epochs": 2} and b.budget == {}  # b did not overwrite a's budget


def test_an_entry_that_trains_an_identical_config_finds_its_twin_run(tmp_path, quiet_log):
    from dataclasses import replace

    from pneumolib.data.dataset import fingerprint, prepare, resolve_data_dir
    from pneumolib.models.checkpoint import save_checkpoint
    from pneumolib.models.networks import build_model
    from pneumolib.notebook import series
    from pneumolib.studies.catalogue import get_config

    s = series.start(None, "fixture", "cpu", [0], runs=tmp_path)
    cfg = series.wanted_config(s, get_config("04"), 0)
    twin = tmp_path / "04_rgb_grayscale_mismatch" / "seed0"
    root, _ = resolve_data_dir(None)
    fp = fingerprint(prepare(root, seed=0, image_size=cfg.image_size))
    save_checkpoint(
        twin / "checkpoint.pt", build_model(in_channels=3), cfg, 0.5, {"holdout": "folders", "data_fingerprint": fp}
    )
    (twin / "metrics.json").write_text("{}")
    # entry 05 asks for ImageNet weights; without them it trains exactly entry 04's config, on the same data
    d05 = tmp_path / "05_pretrained" / "seed0"
    smoke = series.start(None, "smoke", "cpu", [0], runs=tmp_path)
    assert series.adopt_twin(smoke, get_config("05"), 0, d05) is None  # another profile
    assert series.adopt_twin(s, get_config("05"), 1, tmp_path / "05_pretrained" / "seed1") is None  # another seed
    assert series.adopt_twin(s, get_config("05"), 0, d05, {"epochs": 1}) is None  # another budget
    assert series.adopt_twin(s, replace(get_config("05"), lr=0.5), 0, d05) is None
    assert not d05.exists()  # nothing copied
    save_checkpoint(
        twin / "checkpoint.pt",
        build_model(in_channels=3),
        cfg,
        0.5,
        {"holdout": "folders", "data_fingerprint": "another-folder"},
    )
    assert series.adopt_twin(s, get_config("05"), 0, d05) is None  # same config, other data: no twin
    save_checkpoint(
        twin / "checkpoint.pt", build_model(in_channels=3), cfg, 0.5, {"holdout": "folders", "data_fingerprint": fp}
    )
    for name in ("last_epoch.pt", "stress.json", "explanation.npz"):  # what is kept beside the checkpoint
        (twin / name).write_bytes(name.encode())
    assert series.adopt_twin(s, get_config("05"), 0, d05) == twin
    for name in ("checkpoint.pt", "last_epoch.pt", "stress.json", "explanation.npz"):
        # regression: 05's seed table said 'not kept (trained before last_epoch.pt)' for a twin of 04's seed 0,
        # whose last epoch was kept but not copied
        assert (d05 / name).read_bytes() == (twin / name).read_bytes(), name
    assert series.adopt_twin(s, get_config("05"), 0, d05) is None  # a folder with a checkpoint is left alone


def test_a_twin_entry_shows_the_twins_grad_cam_results_without_recomputing_them(
    tmp_path, monkeypatch, quiet_log, caplog
):
    # notebook 05 trains exactly notebook 04's config (no ImageNet weights here): its Grad-CAM, ROAD and
    # randomisation results are 04's, copied with the checkpoint, not computed a second time
    import logging

    import numpy as np
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no ImageNet weights, on any machine
    monkeypatch.delenv("PNEUMOLIB_IMAGENET_WEIGHTS", raising=False)

    from pneumolib.notebook import series
    from pneumolib.studies import target_maps
    from pneumolib.studies.catalogue import get_config

    s = series.start(None, "smoke", "cpu", [0], runs=tmp_path)
    [r04] = series.run_seeds(get_config("04"), s, cam_per_class=2)
    assert (tmp_path / "04_rgb_grayscale_mismatch" / "seed0" / "explanation.npz").is_file()

    def fail(*a, **k):
        raise AssertionError("Grad-CAM recomputed")

    monkeypatch.setattr(target_maps, "explain_predictor", fail)
    with caplog.at_level(logging.WARNING, logger="pneumolib"):
        [r05] = series.run_seeds(get_config("05"), s, cam_per_class=2)
    # regression: notebooks 05-09 printed each seed's NOT PRETRAINED warning twice (the twin lookup warned too)
    assert sum("NOT PRETRAINED" in r.getMessage() for r in caplog.records) == 1
    assert (tmp_path / "05_pretrained" / "seed0" / "explanation.npz").is_file()
    assert np.array_equal(r05.explanation.cams, r04.explanation.cams)
    assert r05.metrics["lung_focus"] == r04.metrics["lung_focus"]
    with pytest.raises(AssertionError, match="recomputed"):  # other settings: the kept results do not apply
        series.run_seeds(get_config("05"), s, cam_per_class=3)


def test_notebook_10_can_leave_out_a_side_branch_of_the_ablation_only(capsys, monkeypatch):
    from pneumolib.notebook import series as nb
    from pneumolib.studies import protocol

    seen = {}
    monkeypatch.setattr(
        protocol, "score_steps", lambda *a, configs=None, **k: seen.setdefault("names", [c.name for c in configs])
    )
    s = nb.Series(None, "smoke", "cpu", [0], Path("."))
    nb.ablation(s, holdouts="folders", skip="abl_per_image")
    assert (
        "abl_per_image" not in seen["names"]
        and "abl_equalize" in seen["names"]
        and len(seen["names"]) == len(protocol.ablation_configs()) - 1
    )
    assert "left out of this render: abl_per_image" in capsys.readouterr().out
    with pytest.raises(ValueError, match="only side branches"):
        nb.ablation(s, holdouts="folders", skip="abl_equalize")


def test_notebook_10_can_leave_out_the_ablation_protocols_and_says_so(capsys):
    from pneumolib.notebook import series as nb
    from pneumolib.studies import protocol

    s = nb.Series(None, "smoke", "cpu", [0], Path("."))
    assert nb.holdout_list("folders,early_ids") == ("folders", "early_ids")
    assert nb.holdout_list("folders") == ("folders",)
    assert "early-ID holdout was not trained" in capsys.readouterr().out
    assert nb.holdout_list("none") == () and nb.ablation(s, holdouts="none") == []
    assert "ablation was not trained" in capsys.readouterr().out
    with pytest.raises(ValueError, match="HOLDOUTS"):
        nb.holdout_list("early_ids")
    assert nb.matched_baseline(s, train=False) is None
    assert "not trained in this render" in capsys.readouterr().out
    assert nb.matched_stress(None, s) == {} and protocol.ablation_frame([]).empty


@pytest.fixture
def quiet_log():
    """series.start shows pneumolib's log in notebooks; leave the test session's logging as it was."""
    import logging

    log = logging.getLogger("pneumolib")
    handlers, level = list(log.handlers), log.level
    yield
    log.handlers[:] = handlers
    log.setLevel(level)


def test_plot_comparison_draws_a_point_outside_its_own_interval_regression():
    # papermill 08 -p PROFILE fixture -p SEED 1 failed: "'xerr' must not contain negative values" (a small split's
    # percentile bootstrap interval that excludes its own point)
    import matplotlib

    matplotlib.use("Agg")
    from pneumolib.analysis.plots import plot_comparison

    row = {
        "name": "run",
        "n": 400,
        "accuracy": 0.5,
        "sensitivity": 0.9,
        "specificity": 0.1,
        "auc": 0.42,
        "ci95": {"accuracy": [0.4, 0.6], "sensitivity": [0.8, 1.0], "specificity": [0.0, 0.2], "auc": [0.45, 0.7]},
    }
    fig = plot_comparison([row])
    assert len(fig.axes) == 4


def test_every_lift_table_says_whether_its_maps_passed_their_checks():
    from pneumolib.analysis.cam import recorded_sanity
    from pneumolib.notebook import helpers as H

    m = json.loads(
        json.dumps(
            {
                "gradcam": {
                    "road": {"model_minus_random": 0.1, "model_minus_random_ci95": [0.02, 0.19]},
                    "randomisation_rank_corr": {"mean": -0.1, "per_image": [0.1, -0.3]},
                }
            }
        )
    )
    assert H.maps_checked(recorded_sanity(m["gradcam"])).startswith(
        "pass: ROAD model - random map 0.100 [0.020, 0.190]"
    )
    m["gradcam"]["road"]["model_minus_random_ci95"] = [-0.05, 0.19]  # not above a random map
    assert H.maps_checked(recorded_sanity(m["gradcam"])).startswith("FAIL")
    assert H.maps_checked(recorded_sanity({})).startswith("NOT CHECKED")
    legacy = {"faithfulness": m["gradcam"]["road"], "randomisation_rank_corr": m["gradcam"]["randomisation_rank_corr"]}
    assert recorded_sanity(legacy) == recorded_sanity(m["gradcam"])  # run folders from before 'road' was named so
    row = H.seed_table([dict(_metrics(0, 0.9), gradcam=m["gradcam"])]).iloc[0]
    assert row["Grad-CAM maps' checks"].startswith("FAIL")


def test_the_shortcut_audit_is_read_in_words_computed_from_its_numbers(capsys):
    from pneumolib.notebook import helpers as H

    def rep(flipped, out_change, in_change):
        return {
            "outside_lung_reliance": {
                "flipped_share": flipped,
                "mean_abs_change": out_change,
                "flipped_share_ci95": [flipped - 0.02, flipped + 0.02],
            },
            "inside_lung_reliance": {"flipped_share": 0.3, "mean_abs_change": in_change},
            "probe_auc": 0.94,
            "probe_auc_model_input": 0.9,
            "worst_group": {"worst": {"class": "NORMAL", "half": "probe disagrees", "recall": 0.8, "ci95": [0.7, 0.9]}},
        }

    H.audit_reading({"a": rep(0.05, 0.05, 0.2), "b": rep(0.27, 0.2, 0.18), "c": rep(0.05, 0.3, 0.2)})
    lines = capsys.readouterr().out.splitlines()
    assert "flips 5.0% [0.030, 0.070]" in lines[0] and "looks at the lungs" in lines[0]
    assert "READS OUTSIDE THE LUNGS" in lines[1] and "READS OUTSIDE THE LUNGS" in lines[2]


VERDICT_WORDS = re.compile(
    r"(seeds disagree|too few films|cannot tell|does not hold|not tested|collapsed seed|"
    r"untrained seed)"
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_prose_names_verdicts_as_labels_and_never_states_one(path):
    # the kind of contradiction a reader found ("cannot tell ... seeds disagree" in prose beside a row that read
    # "holds"): a verdict is computed by the rule and printed; prose may refer to a label ('seeds disagree',
    # *not tested*), quoted, to say what it means, but never states one as the outcome
    nb = nbformat.read(path, as_version=4)
    stated = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "markdown":
            continue
        for m in VERDICT_WORDS.finditer(c.source):
            a, b = m.start(), m.end()
            quoted = c.source[a - 1 : a] in "'\"*" or (
                re.search(r"['\"*][^'\"*\n]*$", c.source[max(0, a - 20) : a]) and c.source[b : b + 1] in "'\"*:)"
            )
            if not quoted:
                stated.append(f"cell {i}: ...{c.source[max(0, a - 50) : b + 20]}...")
    assert not stated, f"{path.name}: verdict words stated in prose, not quoted as labels: {stated}"


def test_the_films_are_not_called_greyscale_jpegs_regression():
    # 04 called the films greyscale JPEGs; every file of the data set is a 3-component JPEG (equal channels)
    text = " ".join(
        c.source for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown"
    )
    assert not re.search(r"greyscale JPEG, which is what this data set|films are greyscale JPEGs", text)


def _capture_shown(monkeypatch, shown: list) -> None:
    """What the notebook views display (notebook.display.show, as each view module holds it) goes into SHOWN."""
    from pneumolib.notebook import display, run_views, seed_views

    for module in (display, run_views, seed_views):
        monkeypatch.setattr(module, "show", shown.append)


def test_a_verdict_row_without_a_measurement_gives_a_reason_not_nan(monkeypatch):
    import pandas as pd

    from pneumolib.notebook import helpers as H

    shown = []
    _capture_shown(monkeypatch, shown)
    H.log_vs_rerun("09", [_metrics(0, 0.9)])  # no Grad-CAM record: those rows are not measured
    table = shown[0]
    assert isinstance(table, pd.DataFrame)
    assert not table.astype(str).isin(["nan", "NaN"]).any().any()
    assert (table["mean"] == "not measured (see note)").any()


def _run_calling(seed: int, val_pneumonia: float, test_cm, entry_epochs: int = 6) -> dict:
    """A run's metrics as the summary reads them: validation share called PNEUMONIA, test confusion matrix."""
    n = 100
    k = round(val_pneumonia * n)
    (tn, fp), (fn, tp) = test_cm
    spec = tn / (tn + fp)
    return {
        "config": {"seed": seed, "epochs": entry_epochs, "max_train_images": 2000, "image_size": 128},
        "best_epoch": 3,
        "val": {"confusion_matrix": [[max(0, 30 - k), min(30, k)], [max(0, 70 - (k - min(30, k))), k - min(30, k)]]},
        "test": {
            "confusion_matrix": [list(test_cm[0]), list(test_cm[1])],
            "specificity": spec,
            "ci95": {"specificity": [spec - 0.05, spec + 0.05]},
        },
    }


def test_the_summary_figure_marks_collapsed_seeds_and_the_true_share():
    from pneumolib.notebook import summary

    trained = [_run_calling(s, 0.72, ((80, 20), (10, 290))) for s in range(3)]
    runs = {"01": trained, "02": [_run_calling(0, 0.99, ((2, 98), (0, 300))), *trained[1:]]}
    fig = summary.plot_everything_pneumonia(runs)
    ax = fig.axes[0]
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(crosses) == 1 and len(dots) == 5  # entry 02's seed 0 collapsed; the other five seeds trained
    assert abs(crosses[0].get_ydata()[0] - 398 / 400) < 1e-9
    assert [t.get_text() for t in ax.get_xticklabels()] == ["01", "02"]  # entries without runs are left out
    true_line = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(true_line) == 1 and abs(true_line[0].get_ydata()[0] - 300 / 400) < 1e-9
    assert summary.plot_everything_pneumonia({}) is None


def test_the_summary_answers_what_to_do_instead_from_the_record():
    from pneumolib.notebook import summary

    text = summary.what_instead_answer(
        [
            {
                "entry": "10",
                "claim": "keep NORMAL recall on a cohort the model has not seen",
                "verdict": "not tested",
                "note": "no measurement",
            }
        ]
    )
    assert "measurements on the external cohort" in text and "reach the project's goal of 0.90" in text
    assert "'not tested' on the cohort claim (no measurement)" in text


def test_notebook_10s_overview_adopts_a_twin_entrys_run_instead_of_training_it_regression(
    tmp_path, monkeypatch, quiet_log
):
    # the fixture render of notebook 10 trained entry 05 again although it is entry 04's twin without ImageNet weights
    import torch

    from pneumolib.notebook import series
    from pneumolib.studies.catalogue import get_config

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("PNEUMOLIB_IMAGENET_WEIGHTS", raising=False)
    s = series.start(None, "smoke", "cpu", [0], runs=tmp_path)
    series.run_seeds(get_config("04"), s, cam_per_class=2)
    monkeypatch.setattr(series, "REGISTRY", {c.name: c for c in (get_config("04"), get_config("05"))})
    by_entry = series.experiments_by_seed(s)
    assert by_entry["05"][0]["reused_checkpoint"]


def test_the_side_by_side_table_says_not_run_where_a_run_has_no_stress_test_regression(monkeypatch):
    # notebook 10's 'all experiments' table showed NaN for every entry that notebook 10 does not stress-test
    import matplotlib

    matplotlib.use("Agg")
    from pneumolib.notebook import helpers as H

    shown = []
    _capture_shown(monkeypatch, shown)
    a, b = _metrics(0, 0.9), _metrics(0, 0.8)
    for m, e in ((a, "01"), (b, "02")):
        m.update(entry=e, experiment=e, train_seconds=60.0)
        m["test"]["n"] = 100
    a["stress"] = {"stress_accuracy_ext": 0.8, "stress_specificity": 0.7}
    H.compare_all([a, b])
    table = shown[0]
    assert not table.astype(str).isin(["nan", "NaN"]).any().any()
    assert table.loc["02 02", "stress NORMAL recall"] == "not run" and table.loc["01 01", "stress NORMAL recall"] == 0.7


def test_the_lift_table_says_a_cropped_models_lift_is_measured_in_its_crop(monkeypatch, capsys):
    # notebook 10's cross-entry lift table put the lung-mask recipe's lift beside whole-film lifts without saying
    # that the crop changes what a lift can be
    from pneumolib.notebook import helpers as H

    shown = []
    _capture_shown(monkeypatch, shown)
    lf = {
        c: {
            "lung_lift": 1.0,
            "lung_lift_ci95": [0.9, 1.1],
            "heart_lift": 1.0,
            "heart_lift_ci95": [0.9, 1.1],
            "lung_area": a,
        }
        for c, a in (("NORMAL", 0.3), ("PNEUMONIA", 0.3))
    }
    whole = {"entry": "01", "experiment": "baseline", "lung_focus": lf, "config": {"seed": 0, "crop": "none"}}
    crop = {
        "entry": "10",
        "experiment": "recommended",
        "config": {"seed": 0, "crop": "lung_mask"},
        "lung_focus": {c: dict(v, lung_area=0.4) for c, v in lf.items()},
    }
    H.lung_focus_table([whole, crop])
    assert list(shown[0]["lung share of the input"]) == ["30%", "40%"]
    assert "Cropped inputs: 10 (lung_mask crop)" in capsys.readouterr().out
    H.lung_focus_table([whole])
    assert "Cropped inputs" not in capsys.readouterr().out


def test_paired_difference_counts_the_seeds_on_each_side(capsys):
    # 07's prose said "NORMAL recall is lower here on every seed" against entry 05 while one seed was equal: the
    # direction is now counted by this cell, and the prose reads the count
    from pneumolib.notebook import helpers as H

    here = [_metrics(0, 0.74), _metrics(1, 0.87), _metrics(2, 0.79)]
    there = [_metrics(0, 0.89), _metrics(1, 0.87), _metrics(2, 0.95)]
    H.paired_difference(here, there, "specificity", "NORMAL recall", "entry 05")
    out = capsys.readouterr().out
    assert "lower on 2, equal on 1, higher on 0 of 3 seed(s)" in out
    assert "seed 0: NORMAL recall 0.740 here, 0.890 in entry 05: difference -0.150" in out


def test_notebook_prose_cites_only_readme_sections_that_exist_regression():
    # notebook 10 cited "(README, 'Recommended recipe')", a section the README no longer has
    readme = (NB_DIR.parent / "README.md").read_text()
    headings = set(re.findall(r"^#+\s+(.+?)\s*$", readme, flags=re.M))
    for p in NOTEBOOKS:
        for c in nbformat.read(p, as_version=4).cells:
            for section in re.findall(r"README, '([^']+)'", c.source):
                assert section in headings, f"{p.name} cites README section '{section}', which does not exist"


def test_a_headline_row_without_an_interval_says_so():
    from pneumolib.notebook import helpers as H

    row = {
        "claim": "most stable",
        "verdict": "cannot tell",
        "quantity": "spread",
        "mean": 0.003,
        "interval": None,
        "claimed": "> 0",
        "n": 3,
        "note": "",
    }
    text = H.headline_markdown("03", [row], 3, "6 epochs")
    assert '"most stable": cannot tell, spread was 0.00 (no interval).' in text and "3 seeds, 6 epochs" in text


def test_a_collapsed_models_precision_says_undefined_not_nan_regression():
    # 03 and 06 printed 'NORMAL precision NaN | nan-nan' for a seed that called no film NORMAL
    from pneumolib.notebook import helpers as nb

    m = {
        "n": 624,
        "accuracy": 0.625,
        "sensitivity": 1.0,
        "specificity": 0.0,
        "precision": 0.625,
        "npv": float("nan"),
        "auc": 0.71,
        "ci95_unit": "patient",
        "ci95": {
            "accuracy": [0.59, 0.66],
            "precision": [0.59, 0.66],
            "npv": [float("nan"), float("nan")],
            "auc": [0.66, 0.75],
        },
    }
    df = nb.metrics_frame(m)
    col = "95% CI (bootstrap over patients)"
    assert df.loc["NORMAL precision", "value"] == "undefined: no film called NORMAL"
    assert df.loc["NORMAL precision", col] == ""
    assert df.loc["PNEUMONIA precision", "value"] == 0.625 and df.loc["PNEUMONIA precision", col] == "0.590-0.660"
    assert "nan" not in df.to_string().lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_a_notebook_loads_the_runs_of_every_entry_its_claims_compare_with_regression(path):
    # notebook 04 loaded no run of the baseline, 05 none of 01 and 09 typed its list: their comparison rows read
    # 'not tested'; the list comes from the claims (verdicts.compared_with), never typed into the notebook
    from pneumolib.studies.verdicts import compared_with

    entry = path.stem[:2]
    source = path.with_suffix(".py").read_text()
    assert "load_runs([" not in source and "load_runs(['" not in source
    if compared_with(entry):
        assert f'series.load_compared("{entry}", S)' in source
        assert f'nb.log_vs_rerun("{entry}", results, reference)' in source


def test_load_compared_loads_the_entries_the_claims_compare_with(tmp_path, monkeypatch, capsys):
    from pneumolib.notebook import series as SR

    asked = []
    monkeypatch.setattr(SR, "load_runs", lambda entries, s: asked.append(list(entries)) or {})
    SR.load_compared("05", None)
    assert asked == [["01", "04"]]  # the entry 05 changes (04) and the baseline


# --- the series bars read off the rendered outputs (issue 47: bars/series5) -------------------------------------------
MAX_TABLE_COLUMNS = 8  # notebook.display.MAX_COLUMNS, the row labels included
ROAD_PASS_AT_ZERO = re.compile(
    r"\bpass: ROAD model - random map -?0\.000 \[-?0\.000, -?0\.000\]"  # the tables' words (display.maps_checked)
    r"|model minus random [+-]0\.000 \(95% CI by patient [+-]0\.000 to [+-]0\.000\)[^\n]*\n"
    r"(?:[^\n]*\n)??[^\n]*pass their checks[^\n]*: yes"  # the Grad-CAM report's (cam._check_lines)
)
UNTRAINED_LINE = re.compile(r"untrained.*?\bAUC\D{0,12}(\d\.\d+)|\bAUC\D{0,12}(\d\.\d+).*?untrained", re.I)


def _tables(html: str):
    """(header names, body rows as lists of cell texts) of each HTML table in an output."""
    cell = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
    for t in re.findall(r"<table.*?</table>", html, flags=re.S):
        head = re.search(r"<thead>\s*<tr[^>]*>(.*?)</tr>", t, flags=re.S)
        body = re.search(r"<tbody>(.*?)</tbody>", t, flags=re.S)
        rows = [cell.findall(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), flags=re.S)] if body else []
        yield (cell.findall(head.group(1)) if head else []), rows


def output_contradictions(nb) -> list[str]:
    """What the issue's bars forbid in a render: a table wider than MAX_TABLE_COLUMNS, a ROAD 'pass' on a difference
    of 0.000 [0.000, 0.000] (a collapsed model's, which cannot check maps), 'untrained' beside an AUC of 0.9 or more."""
    found = []
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            html = (o.get("data") or {}).get("text/html", "")
            for head, rows in _tables(html if isinstance(html, str) else "".join(html)):
                if rows and max(map(len, rows)) > MAX_TABLE_COLUMNS:
                    found.append(f"cell {i}: a table of {max(map(len, rows))} columns")
                aucs = [k for k, h in enumerate(head) if "AUC" in h]
                for r in rows:
                    if "UNTRAINED" in " ".join(r).upper() and any(
                        k < len(r)
                        and re.match(r"\s*(\d\.\d+)", r[k])
                        and float(re.match(r"\s*(\d\.\d+)", r[k])[1]) >= 0.9
                        for k in aucs
                    ):
                        found.append(f"cell {i}: UNTRAINED beside an AUC of 0.9 or more: {r}")
            md = (o.get("data") or {}).get("text/markdown", "")
            lines = (md if isinstance(md, str) else "".join(md)).splitlines()
            widths = [ln.replace("\\|", "").count("|") - 1 for ln in lines if ln.startswith("|")]  # '\|': in a cell
            if widths and max(widths) > MAX_TABLE_COLUMNS:
                found.append(f"cell {i}: a markdown table of {max(widths)} columns")
        text = _output_text(c)
        found += [f"cell {i}: {m.group(0)}" for m in ROAD_PASS_AT_ZERO.finditer(text)]
        for line in text.splitlines():
            m = UNTRAINED_LINE.search(line)
            if m and float(m.group(1) or m.group(2)) >= 0.9:
                found.append(f"cell {i}: untrained beside an AUC of 0.9 or more: {line.strip()[:120]}")
    return found


def test_output_contradictions_finds_each_thing_the_bars_forbid():
    def nb_with(html="", text=""):
        out = {"output_type": "display_data", "data": {"text/html": html, "text/plain": text}, "metadata": {}}
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[out])])

    row = "".join(f"<td>{k}</td>" for k in range(9))
    assert output_contradictions(nb_with(f"<table><tbody><tr><th>s</th>{row}</tr></tbody></table>"))  # 10 cells
    narrow = (
        "<table><thead><tr><th></th><th>validation AUC</th><th>kept epoch</th></tr></thead><tbody>{}</tbody></table>"
    )
    assert output_contradictions(nb_with(narrow.format("<tr><th>0</th><td>0.970</td><td>1 UNTRAINED</td></tr>")))
    assert not output_contradictions(nb_with(narrow.format("<tr><th>0</th><td>0.612</td><td>1 UNTRAINED</td></tr>")))
    assert output_contradictions(nb_with(text="EPOCH 1: untrained (test AUC 0.970)"))
    assert not output_contradictions(nb_with(text="EPOCH 1: untrained (test AUC 0.512)"))
    assert output_contradictions(nb_with(text="pass: ROAD model - random map 0.000 [0.000, 0.000], randomisation"))
    assert not output_contradictions(nb_with(text="pass: ROAD model - random map 0.225 [0.147, 0.313], rank"))
    assert not output_contradictions(nb_with(text="cannot check (...): ROAD model - random map 0.000 [0.000, 0.000]"))
    report = (
        "faithfulness (ROAD, ...): model map +0.001, random map +0.001; model minus random +0.000 (95% CI by patient "
        "+0.000 to +0.000)\nthe maps pass their checks (ROAD above the random map, changed by randomisation): {}"
    )
    wide_md = {"output_type": "display_data", "data": {"text/markdown": "| a |" + " b |" * 8}, "metadata": {}}
    assert output_contradictions(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[wide_md])]))
    assert output_contradictions(nb_with(text=report.format("yes")))
    assert not output_contradictions(nb_with(text=report.format("NO: lift-based claims ...")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_the_render_shows_no_wide_table_no_road_pass_at_zero_and_no_untrained_beside_a_high_auc(path):
    _require_render(path)
    found = output_contradictions(nbformat.read(path, as_version=4))
    if found and RENDER_PENDING:
        pytest.xfail(f"{path.name} (an earlier render) until the series issue renders this round: {found[:3]}")
    assert not found, f"{path.name}: {found[:5]}"
