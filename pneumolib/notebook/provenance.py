"""What a notebook render shows about itself: the sources it was rendered from, its paths tidied, the library's log."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

RENDERED_FROM = ("pneumolib", "notebooks/*.py")  # what a render's outputs depend on: the package, the sources


def sources_digest(rev: str = "HEAD", repo: str | Path | None = None, paths=RENDERED_FROM) -> str:
    """A short hash of what a render's outputs depend on (the blobs under `paths`) at `rev`, from git's tree: a
    render prints it, and the staleness test compares it with HEAD's without needing the render commit's history
    (a shallow clone has only HEAD). 'unknown' outside a git checkout."""
    import fnmatch
    import hashlib

    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        r = subprocess.run(
            ["git", "ls-tree", "-r", "--full-tree", rev], cwd=repo, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if r.returncode:
        return "unknown"
    lines = [
        ln
        for ln in r.stdout.splitlines()
        if any(fnmatch.fnmatch(ln.split("\t", 1)[-1], p) or ln.split("\t", 1)[-1].startswith(p + "/") for p in paths)
    ]
    return hashlib.sha1("\n".join(sorted(lines)).encode()).hexdigest()[:12]


def stale_paths(commit: str, repo: str | Path | None = None, paths=RENDERED_FROM) -> list[str]:
    """Files a render made at `commit` (as its provenance line prints it) would show differently today: the
    package and notebook sources that differ between that commit and HEAD. A '+dirty' or unknown commit renders
    code no commit holds, so everything counts as stale."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    if commit in ("", "unknown") or commit.endswith("+dirty"):
        return [f"rendered from {commit or 'no'} commit: not a commit's code"]
    r = subprocess.run(
        ["git", "diff", "--name-only", commit, "HEAD", "--", *paths],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if r.returncode:
        return [
            f"commit {commit} not found in this repository ({r.stderr.strip().splitlines()[0] if r.stderr else ''})"
        ]
    return r.stdout.split()


def tidy(text: str, roots: dict[str, str] | None = None) -> str:
    """Text without the absolute paths of the machine that ran it: `roots` (prefix -> name, e.g. the data folder by
    its name), the repository as '.', the home folder as '~', the temporary folder as '$TMPDIR'."""
    repo = Path(__file__).resolve().parents[2]
    subs = dict(roots or {})
    subs.setdefault(str(repo), ".")
    subs.setdefault(tempfile.gettempdir(), "$TMPDIR")
    subs.setdefault(str(Path.home()), "~")
    for prefix in sorted(subs, key=len, reverse=True):  # the longest prefix first: /work/main/runs before /work
        if prefix and prefix != "/":
            text = text.replace(prefix, subs[prefix])
    return text


class _NotebookHandler(logging.Handler):
    """pneumolib's log lines (training epochs, reuse notices, warnings) in the cell's output, paths tidied."""

    def __init__(self, roots: dict[str, str]):
        super().__init__()
        self.roots = roots

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(tidy(self.format(record), self.roots) + "\n")  # the stream of the cell running now
        except Exception:  # noqa: BLE001 - a log line must never break a cell
            self.handleError(record)


def show_library_log(roots: dict[str, str], level: int = logging.INFO) -> None:
    """Show the 'pneumolib' logger's lines in the notebook's cells (one handler, replaced on a re-run)."""
    log = logging.getLogger("pneumolib")
    log.handlers[:] = [h for h in log.handlers if not isinstance(h, _NotebookHandler)] + [_NotebookHandler(roots)]
    log.setLevel(level)
