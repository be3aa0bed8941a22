"""Set-up files agree with each other, and the README's commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _req_names(lines):
    return {
        re.split(r"[<>=!~\[ ]", ln.strip())[0].lower() for ln in lines if ln.strip() and not ln.strip().startswith("#")
    }


def test_environment_yml_installs_requirements_txt():
    env = (ROOT / "environment.yml").read_text()
    assert "-r requirements.txt" in env and "conda-forge" in env


def test_pyproject_runtime_dependencies_are_in_requirements():
    req = _req_names((ROOT / "requirements.txt").read_text().splitlines())
    py = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", py, re.S).group(1)
    names = _req_names(re.findall(r'"([^"]+)"', deps))
    assert names <= req, names - req


def test_torch_pins_admit_the_local_wheels():
    text = (ROOT / "requirements.txt").read_text() + (ROOT / "pyproject.toml").read_text()
    for pkg, ver in (("torch", "2.14.1"), ("torchvision", "0.29.1")):
        spec = re.search(rf"^{pkg}([<>=,.\d]+)", text, re.M).group(1)
        upper = re.search(r"<=([\d.]+)", spec)
        assert upper and tuple(map(int, upper.group(1).split("."))) >= tuple(map(int, ver.split(".")))


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev.sh test" in readme and "./dev.sh main" in readme
    assert re.search(r"^\s*(exec )?\./dev\.sh test\s*$", ci, re.M)


def test_fixture_ships_inside_the_built_wheel(tmp_path):
    # built, not read: a package-data pattern that matches nothing would pass a text check
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("pneumolib-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = [n for n in names if n.startswith("pneumolib/fixture_data/") and n.endswith(".png")]
    on_disk = list((ROOT / "pneumolib" / "fixture_data").rglob("*.png"))
    assert len(shipped) == len(on_disk) > 0
    assert any("/masks/" in n for n in shipped) and any("/test/NORMAL/" in n for n in shipped)
    assert "pneumolib/weights/lungs_unet.pt" in names  # the lung segmenter ships with the package
    # every module and every folder's __init__ (a .gitignore line 'data/' once kept pneumolib/data/__init__.py out of
    # git, so a fresh clone built a wheel without the data layer's package)
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pneumolib").rglob("*.py")}
    assert sources <= set(names), sorted(sources - set(names))
    assert all(
        f"pneumolib/{d.name}/__init__.py" in names
        for d in (ROOT / "pneumolib").iterdir()
        if d.is_dir() and any(d.glob("*.py"))
    )


def test_no_package_source_is_ignored_by_git():
    """Regression: '.gitignore' held 'data/', which ignored pneumolib/data/__init__.py (never committed)."""
    import subprocess

    files = [str(p.relative_to(ROOT)) for p in (ROOT / "pneumolib").rglob("*.py")]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *files], capture_output=True, text=True).stdout
    assert not ignored.split(), ignored
