"""Ruff's lint (pyflakes, pycodestyle's errors, sorted imports; pyproject.toml's [tool.ruff]) passes on the package,
the tests and the tools: CI runs it as part of the README's test command."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "pneumolib", "tests", "tools", "docs/hooks.py",
                        "conftest.py"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
