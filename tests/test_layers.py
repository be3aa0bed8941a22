"""The package's layers hold, and its folders show them: no module imports a higher folder or a higher module of its
own folder (lazy imports inside functions included), none imports another module's _private names, no import
circle, every module opens with a one-line docstring, and the docs/architecture.md's package layout lists the tree as it is."""

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pneumolib"
ARCHITECTURE = PKG.parent / "docs" / "architecture.md"

# The folders, bottom to top: a module may import its own folder or lower ones ('' = the package root, the top).
FOLDERS = ("core", "data", "models", "analysis", "training", "studies", "notebook", "")

# Within a folder, lower number = lower module. A module may import its own rank or lower ones. A new module must be
# placed here (the test fails until it is), so the layering is decided, not drifted into.
MODULES = {
    "core.config": 0,
    "core.version": 0,
    "core.registry": 0,
    "core.io": 0,
    "core.runtime": 0,
    "core.stats": 0,
    "core.runs": 1,
    "core.scores": 1,
    "core.distributed": 1,
    "data.fixture": 0,
    "data.image_checks": 0,
    "data.dicom": 1,
    "data.imaging": 2,
    "data.transforms": 0,
    "data.shifts": 0,
    "data.augment": 1,
    "data.lungs_masks": 2,
    "data.lungs_segmenter": 3,
    "data.lungs_eval": 4,
    "data.lungs": 5,
    "data.population": 6,
    "data.cache": 6,
    "data.resources": 7,
    "data.samples": 7,
    "data.splits": 8,
    "data.sources": 9,
    "data.hygiene": 10,
    "data.dataset": 11,
    "models.networks": 0,
    "models.ood_score": 0,
    "models.inference": 1,
    "models.checkpoint": 2,
    "analysis.evaluate": 0,
    "analysis.cam_methods": 0,
    "analysis.ood": 0,
    "analysis.cam_maps": 1,
    "analysis.cam_explanation": 2,
    "analysis.cam_checks": 3,
    "analysis.cam": 4,
    "analysis.adapt": 1,
    "analysis.adapt_prior": 1,
    "analysis.plots": 1,
    "analysis.site": 2,
    "analysis.site_shift": 0,
    "training.recipe": 0,
    "training.state": 0,
    "training.fit": 0,
    "training.ensemble": 0,
    "training.lungs": 0,
    "studies.verdict_estimates": 0,
    "studies.verdict_films": 0,
    "studies.verdict_flags": 0,
    "studies.verdict_rule": 0,
    "studies.verdicts": 1,
    "studies.runs": 0,
    "studies.comparison": 0,
    "studies.experiment": 1,
    "studies.target_maps": 1,
    "studies.run_config": 1,
    "studies.stress": 1,
    "studies.shortcuts": 1,
    "studies.drift": 1,
    "studies.bench": 1,
    "studies.card_records": 0,
    "studies.card_format": 1,
    "studies.card": 2,
    "studies.protocol": 2,
    "studies.candidates": 2,
    "studies.thresholds": 1,
    "studies.site": 1,
    "studies.catalogue": 0,
    "studies.catalogue.entries": 0,
    "studies.catalogue.claim_kinds": 1,
    "studies.catalogue.claims": 1,
    "studies.ensemble": 0,
    "studies.lungs": 0,
    "studies.cohort": 1,
    "studies.sensitivity": 2,
    "notebook.series": 0,
    "notebook.provenance": 0,
    "notebook.display": 0,
    "notebook.cohort_views": 0,
    "notebook.run_views": 1,
    "notebook.seed_views": 1,
    "notebook.sensitivity": 2,
    "notebook.helpers": 3,
    "notebook.summary": 3,
    "notebook.one_class": 0,
    "notebook.account": 1,
    "notebook.levers": 2,
    "api": 0,
    "cli.common": 1,
    "cli.evaluate": 2,
    "cli.train": 2,
    "cli.audit": 2,
    "cli.lungs": 2,
    "cli.predict": 3,
    "cli": 4,
    "__main__": 5,
    "__init__": 5,
}


def _name(path: Path) -> str:
    """'data.lungs' for pneumolib/data/lungs.py; 'cli' for pneumolib/cli.py; 'data' for a folder's __init__."""
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> list[str]:
    return sorted(_name(p) for p in PKG.rglob("*.py") if "fixture_data" not in p.parts)


def _path(name: str) -> Path:
    p = PKG / (name.replace(".", "/") + ".py")
    return p if p.is_file() else PKG / name.replace(".", "/") / "__init__.py"


def _rank(name: str) -> tuple[int, int]:
    folder = name.split(".")[0] if "." in name else ("" if name in MODULES else name)
    if folder == "cli":  # the command line is the top layer, beside the API it calls
        folder = ""
    return FOLDERS.index(folder), MODULES.get(name, -1)


def _resolve(name: str, module: str | None, level: int) -> list[str]:
    """The pneumolib modules an import statement of module NAME reaches."""
    here = _path(name)
    base = here.parent.relative_to(PKG).parts
    if level:
        base = base[: len(base) - (level - 1)] if level > 1 else base
        parts = list(base) + (module.split(".") if module else [])
    elif module and (module == "pneumolib" or module.startswith("pneumolib.")):
        parts = module.split(".")[1:]
    else:
        return []
    return [".".join(parts)] if parts else []


def _imports(name: str):
    """(imported pneumolib module, imported names, line) for every import in the module, at any depth."""
    tree = ast.parse(_path(name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = _resolve(name, node.module, node.level)
            if not targets and (node.level or node.module == "pneumolib"):
                targets = [""]
            names = [a.name for a in node.names]
            for t in targets:
                full = [f"{t}.{n}".strip(".") for n in names]
                submodules = [f for f in full if f in MODULES or f in FOLDERS]
                if submodules:  # from .core import config: the module config itself
                    for f in submodules:
                        yield f, [], node.lineno
                elif t:
                    yield t, names, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("pneumolib."):
                    yield a.name.split(".", 1)[1], [], node.lineno


def test_every_module_has_a_place():
    missing = [m for m in _modules() if m not in MODULES and m not in FOLDERS]
    assert not missing, f"place these in MODULES: {missing}"
    assert not [m for m in MODULES if m not in _modules()], "MODULES lists modules that are gone"


@pytest.mark.parametrize("name", [m for m in _modules() if m in MODULES])
def test_no_module_imports_a_higher_folder_or_module(name):
    up = [
        f"{name} {_rank(name)} imports {t} {_rank(t)} at line {line}"
        for t, _, line in _imports(name)
        if t in MODULES and _rank(t) > _rank(name)
    ]
    assert not up, "\n".join(up)


@pytest.mark.parametrize("name", [m for m in _modules() if m in MODULES])
def test_no_module_imports_private_names_of_another(name):
    private = [
        f"{name} imports {n} from {t} at line {line}"
        for t, names, line in _imports(name)
        for n in names
        if n.startswith("_") and not n.endswith("__") and t != name
    ]
    assert not private, "\n".join(private)


def test_no_module_imports_another_modules_logger():
    """Regression (issue 45): the analysis.cam facade (and data.lungs) re-exported cam_maps' (lungs_segmenter's)
    logger, so a record could be logged under another module's name. Each module logs under its own."""
    names = {m: _logger_names(m) for m in MODULES}
    found = [
        f"{name} imports {n} (a logger) from {t} at line {line}"
        for name in MODULES
        for t, imported, line in _imports(name)
        for n in imported
        if n in names.get(t, ())
    ]
    assert not found, "\n".join(found)


def _logger_names(module: str) -> set[str]:
    """The module-level names MODULE binds to logging.getLogger(...)."""
    tree = ast.parse(_path(module).read_text())
    return {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "attr", "") == "getLogger"
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def test_no_import_circle_between_modules():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    seen, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(m) :] + [m]))
        if m in seen:
            return
        stack.append(m)
        for t in sorted(graph[m]):
            if t not in ("__init__",):
                visit(t)
        stack.pop()
        seen.add(m)

    for m in sorted(graph):
        visit(m)


@pytest.mark.parametrize("name", _modules())
def test_module_opens_with_a_one_line_docstring(name):
    doc = ast.get_docstring(ast.parse(_path(name).read_text()), clean=False)
    assert doc, f"{name} has no module docstring"
    first = doc.strip().splitlines()[0]
    assert first.endswith(".") or first.endswith(":"), f"{name}: the first line should be a sentence: {first!r}"


def test_lower_layers_import_nothing_from_the_studies_the_issue_names():
    above = {
        "models.checkpoint",
        "training.fit",
        "analysis.evaluate",
        "analysis.cam",
        "studies.experiment",
        "studies.stress",
        "studies.protocol",
        "studies.bench",
        "studies.drift",
        "notebook.helpers",
        "analysis.plots",
        "cli",
    }
    for low in ("data.dataset", "models.networks", "data.transforms", "data.imaging", "core.config"):
        bad = {t for t, _, _ in _imports(low)} & above
        assert not bad, f"{low} imports {bad}"


def test_the_docs_package_layout_lists_the_tree_as_it_is():
    section = ARCHITECTURE.read_text().split("# Package layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)`", section))
    modules = {m for m in _modules() if m in MODULES and not m.startswith("__")}
    assert modules <= listed, f"docs/architecture.md's package layout misses {sorted(modules - listed)}"
    folders = [f for f in FOLDERS if f]
    assert all(f"`{f}/`" in section for f in folders), "docs/architecture.md's package layout should name every folder"
    stale = {x for x in listed if "." in x and x.split(".")[0] in folders and x not in MODULES}
    assert not stale, f"docs/architecture.md's package layout lists modules that are gone: {sorted(stale)}"


def test_the_checker_sees_lazy_upward_imports(tmp_path, monkeypatch):
    # guards the test itself: an import inside a function body is found, resolved to the folder's module
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "fake.py").write_text(
        '"""x."""\ndef f():\n    from ..studies.experiment import run_experiment\n'
    )
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path)
    found = list(_imports("core.fake"))
    assert ("studies.experiment", ["run_experiment"], 3) in found
    assert _rank("studies.experiment") > _rank("core.fake")


def test_no_function_in_the_package_is_over_60_lines():
    # issue 31: functions of one job (build_parser was 215 lines, fit 150, run_experiment 134)
    import ast

    long = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.relative_to(PKG)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_no_module_in_the_package_is_over_500_lines():
    # the ownership issue: a module holds one concept (dataset.py was 911 lines of sources, splits, the decode cache,
    # duplicate checks and the torch dataset; cam.py 889 of maps, checks, overlays and the report)
    long = [
        f"{p.relative_to(PKG)} ({n} lines)"
        for p in PKG.rglob("*.py")
        if "fixture_data" not in p.parts and (n := len(p.read_text().splitlines())) > 500
    ]
    assert not long, long


def test_cli_files_are_at_most_300_lines_and_parse_call_print():
    long = [f"{p.name} ({n})" for p in (PKG / "cli").glob("*.py") if (n := len(p.read_text().splitlines())) > 300]
    assert not long, long
