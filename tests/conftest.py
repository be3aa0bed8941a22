"""Shared fixtures: the bundled phantom data set and one small trained run, made once per session."""
from dataclasses import replace

import pytest

from pneumolib.config import apply_profile, get_config
from pneumolib.data import discover
from pneumolib.fixture import fixture_dir


@pytest.fixture(scope="session")
def fixture_data():
    return discover(fixture_dir())


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, fixture_data):
    """Entry 04 (3-channel) trained on the fixture: 10 CPU epochs, a few seconds."""
    from pneumolib.experiment import run_experiment

    out = tmp_path_factory.mktemp("run") / "04"
    return run_experiment(get_config("04"), None, out, data=fixture_data)


@pytest.fixture
def tiny_config():
    return replace(apply_profile(get_config("baseline"), "fixture"), epochs=1)
