"""Ruff's lint (pyflakes, pycodestyle's errors, sorted imports) and its formatter (pyproject.toml's [tool.ruff]) pass
on the package, the tests and the tools: CI runs both as part of the README's test command (seconds)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


PATHS = ["pneumolib", "tests", "tools", "docs/hooks.py", "conftest.py"]


def test_ruff_format_check_passes():
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *PATHS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_ruff_check_passes():
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "pneumolib", "tests", "tools", "docs/hooks.py", "conftest.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
