"""The public API: the README's snippet runs as written, every public name is documented, `import pneumolib` stays
light, and the shipped segmenter is loaded once per process."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pneumolib

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    m = re.search(r"<!-- api-snippet -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert m, "README.md has no ```python block after <!-- api-snippet -->"
    return m.group(1)


def test_the_readme_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_snippet(), "README.md snippet", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(ln.split()[0] in ("NORMAL", "PNEUMONIA") for ln in lines)
    assert (tmp_path / "runs" / "example" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("name", [n for n in pneumolib.__all__ if n != "__version__"])
def test_every_public_name_resolves_and_has_a_google_style_docstring(name):
    obj = getattr(pneumolib, name)
    doc = inspect.getdoc(obj) or ""
    assert doc, name
    if inspect.isfunction(obj):
        assert "Returns:" in doc, f"{name}: no Returns section"
        if inspect.signature(obj).parameters:
            assert "Args:" in doc, f"{name}: no Args section"
    else:
        assert "Attributes:" in doc, f"{name}: no Attributes section"


def test_no_public_name_is_shadowed_by_a_submodule():
    """A package attribute is replaced by a submodule of the same name once that is imported (pneumolib.train)."""
    pkg = Path(pneumolib.__file__).parent
    assert not {n for n in pneumolib.__all__ if (pkg / f"{n}.py").exists() or (pkg / n).is_dir()}


def test_import_pneumolib_does_not_import_torch():
    code = "import sys, pneumolib; print('torch' in sys.modules, pneumolib.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.split()[0] == "False"
    with pytest.raises(AttributeError):
        pneumolib.no_such_name  # noqa: B018


def test_the_shipped_segmenter_is_loaded_once_per_process(monkeypatch):
    """Regression (layers issue): the shipped segmenter was loaded and hashed in seven places, about four times per
    run (preprocessing_for alone on every call)."""
    from dataclasses import replace

    from pneumolib.data import lungs as L
    from pneumolib.models.checkpoint import preprocessing_for
    from pneumolib.studies.catalogue import get_config

    calls = []
    real = L.LungSegmenter.load.__func__

    def counting(cls, path=None):
        calls.append(path)
        return real(cls, path)

    monkeypatch.setattr(L.LungSegmenter, "load", classmethod(counting))
    L.shipped_segmenter.cache_clear()
    cfg = replace(get_config("cand_lungs"), image_size=64)
    digests = {preprocessing_for(cfg).crop_segmenter for _ in range(4)}
    assert L.shipped_segmenter() is L.shipped_segmenter()
    assert len(calls) == 1 and digests == {L.shipped_digest()}
    L.shipped_segmenter.cache_clear()
