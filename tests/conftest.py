"""Shared fixtures: the bundled phantom data set and one small trained run, made once per session."""

import json
import shutil
from dataclasses import replace

import pytest

from pneumolib.core.config import apply_profile
from pneumolib.data.dataset import discover
from pneumolib.data.fixture import fixture_dir
from pneumolib.studies.catalogue import get_config


@pytest.fixture(scope="session")
def fixture_data():
    return discover(fixture_dir())


@pytest.fixture(scope="session")
def trained_run_session(tmp_path_factory, fixture_data):
    """Entry 04 (3-channel) trained on the fixture once per session: 10 CPU epochs, a few seconds. Module-scoped
    fixtures that only read it (load its checkpoint, copy its folder) use this; tests use trained_run."""
    from pneumolib.studies.experiment import run_experiment

    out = tmp_path_factory.mktemp("run") / "04"
    return run_experiment(get_config("04"), None, out, data=fixture_data)


def _state(r) -> tuple:
    """What a test could change in the shared run: its folder's files, its metrics, threshold and weights."""
    files = tuple(
        sorted((str(p.relative_to(r.run_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in r.run_dir.rglob("*"))
    )
    weights = float(sum(v.double().sum() for v in r.predictor.model.state_dict().values()))
    return files, json.dumps(r.metrics, sort_keys=True, default=str), r.predictor.threshold, weights


@pytest.fixture
def trained_run(trained_run_session):
    """The shared trained run, read-only: a test that changes its folder, metrics, threshold or weights fails (work on
    a copy: run_copy), so no test depends on what another left behind, whatever the order."""
    before = _state(trained_run_session)
    yield trained_run_session
    assert _state(trained_run_session) == before, "this test changed the shared trained run; use a copy (run_copy)"


@pytest.fixture
def run_copy(trained_run_session, tmp_path):
    """The trained run's files in a folder of its own, for tests that write into a run folder."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.pt", "metrics.json", "scores_test.csv"):
        shutil.copy(trained_run_session.run_dir / name, out / name)
    return out


@pytest.fixture
def tiny_config():
    return replace(apply_profile(get_config("baseline"), "fixture"), epochs=1)


@pytest.fixture
def cli(capsys):
    """`python -m pneumolib ARGS`, run in this process (pneumolib.cli.main: the same parsing, exit codes and error
    lines, without starting an interpreter and importing torch again, seconds per call): returns an object with
    the subprocess result's returncode, stdout and stderr. Tests of what only a fresh process shows (the entry
    point, memory caps, signals) keep subprocess.run."""
    from types import SimpleNamespace

    from pneumolib.cli import main

    def run(*args):
        capsys.readouterr()  # what the test printed before is not this command's output
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run
