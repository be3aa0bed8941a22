"""Registries: a name is registered beside its implementation, an unknown name is refused at once with the known
ones, a name cannot be registered twice, a name registered by import path costs no import until it is used."""

import subprocess
import sys

import pytest

from pneumolib.core.registry import Registry, UnknownName


def test_a_registered_name_gives_its_implementation_and_an_unknown_one_is_refused_listing_the_known():
    r = Registry("widget")

    @r.register("round")
    def round_widget():
        return "round"

    r.add("square", lambda: "square")
    assert r["round"] is round_widget and list(r) == ["round", "square"] and "square" in r and len(r) == 2
    with pytest.raises(UnknownName, match="unknown widget 'oval'; known: round, square"):
        r["oval"]
    with pytest.raises(ValueError, match="registered twice"):
        r.add("round", object())
    r["round"] = spy = object()  # a deliberate replacement (a test's spy) is item assignment
    assert r["round"] is spy


def test_a_name_registered_by_import_path_is_imported_on_first_use():
    r = Registry("thing")
    r.add("path", "pathlib:PurePosixPath")
    from pathlib import PurePosixPath

    assert r["path"] is PurePosixPath


def test_listing_the_cam_methods_imports_no_grad_cam_and_the_cli_offers_exactly_them():
    code = (
        "import sys; from pneumolib.analysis.cam_methods import METHODS; print(list(METHODS)); "
        "print('pytorch_grad_cam' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split("\n")
    assert out[1] == "False False"
    from pneumolib.analysis.cam_methods import METHODS
    from pneumolib.cli import build_parser

    explain = build_parser()._subparsers._group_actions[0].choices["explain"]
    method = next(a for a in explain._actions if a.dest == "method")
    assert list(method.choices) == list(METHODS)
    import pytorch_grad_cam

    assert METHODS["hirescam"] is pytorch_grad_cam.HiResCAM


FIT = "pneumolib.training.fit"


@pytest.mark.parametrize(
    "module, name",
    [
        (FIT, "LOSSES"),
        (FIT, "OPTIMIZERS"),
        (FIT, "SCHEDULERS"),
        (FIT, "SAMPLERS"),
        ("pneumolib.data.augment", "BATCHED"),
        ("pneumolib.data.transforms", "LOG_TRANSFORMS"),
        ("pneumolib.analysis.cam_methods", "METHODS"),
    ],
)
def test_what_users_extend_is_a_registry(module, name):
    import importlib

    assert isinstance(getattr(importlib.import_module(module), name), Registry)
