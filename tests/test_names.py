"""No old module names in printed text: every dotted `pneumolib.x.y` that the package, the tools, the docs or the
notebooks mention resolves to a module or an attribute that exists today (a reader who copies it gets the thing)."""

import importlib
import json
import re
from pathlib import Path

import pytest

from tests.test_notebooks import RENDER_PENDING

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bpneumolib(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _text_files():
    yield from (REPO / "pneumolib").rglob("*.py")
    yield from (REPO / "tools").rglob("*.py")
    yield from (REPO / "notebooks").glob("*.py")
    yield from (REPO / "docs").glob("*.md")
    yield REPO / "README.md"


def _unresolved(pairs) -> list[str]:
    seen: dict[str, str] = {}
    for where, text in pairs:
        for name in NAME.findall(text):
            name = name.rstrip(".")
            if name.endswith((".py", ".ipynb", ".md", ".json", ".pt")):
                continue  # a file name, not a module path
            seen.setdefault(name, where)
    return [f"{name} (in {where})" for name, where in sorted(seen.items()) if not _resolves(name)]


def test_every_module_name_in_the_code_docs_and_notebook_sources_exists():
    pairs = [(str(p.relative_to(REPO)), p.read_text()) for p in _text_files()]
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        pairs += [(f"{nb.name} cell {i}", "".join(c["source"])) for i, c in enumerate(cells)]
    assert not _unresolved(pairs)


def test_every_module_name_in_the_committed_notebook_outputs_exists(request):
    pairs = []
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        for i, c in enumerate(json.loads(nb.read_text())["cells"]):
            for out in c.get("outputs", []):
                text = out.get("text") or out.get("data", {}).get("text/plain") or ""
                pairs.append((f"{nb.name} cell {i} output", "".join(text)))
    bad = _unresolved(pairs)
    if bad and RENDER_PENDING:  # outputs are rewritten by the series issue's render
        request.applymarker(pytest.mark.xfail(reason=f"stale until the series render: {bad[:3]}", strict=False))
    assert not bad


@pytest.mark.parametrize("old", ["pneumolib.train", "pneumolib.verdicts.decide", "pneumolib.checkpoint.Predictor"])
def test_the_rule_catches_an_old_name(old):
    assert _unresolved([("here", f"see {old} for the details")])
