"""What a notebook render shows about itself: the sources it was rendered from, its paths tidied, the library's log."""

from __future__ import annotations

import contextlib
import logging
import os
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


TWIN_SOURCE = "pneumolib.studies.run_config"  # the logger of 'RUN trains exactly what TWIN trained' (adopt_twin)
REUSE_SOURCE = "pneumolib.studies.experiment"  # the logger whose run header and reuse notices these are
CAM_SOURCE = "pneumolib.studies.target_maps"  # the logger of 'Grad-CAM results reused from ...'
RUN_HEADER = "%s %s on %s; %s; weights: %s"  # experiment's line opening every run (entry, name, data, budget, weights)


class _ReuseCollector(logging.Filter):
    """Takes a reused run's lines off the log (its header, 'reusing CKPT ...', 'Grad-CAM results reused
    ...') and keeps (checkpoint, commit) and the budgets; each line goes on at DEBUG (this module's
    logger), shown only where DEBUG is asked for. A run that trains keeps its header, released in
    order before its next line."""

    def __init__(self):
        super().__init__()
        self.held, self.passing, self.last = None, False, (None, True)
        self.reused: list[tuple[str, str]] = []
        self.budgets: set[str] = set()
        self.cams = 0
        self.twins: list[tuple[str, str]] = []  # (run folder, the twin it started from)

    def release(self) -> None:
        """Show the held header: its run is not a reused one."""
        if self.held is not None:
            record, self.held, self.passing = self.held, None, True
            try:
                logging.getLogger(record.name).handle(record)
            finally:
                self.passing = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.passing:
            return True
        if self.last[0] is record:  # the same record at another handler: the same decision
            return self.last[1]
        keep = self._decide(record)
        self.last = (record, keep)
        return keep

    def _debug(self, record: logging.LogRecord) -> None:
        logging.getLogger(__name__).debug(record.getMessage())

    def _decide(self, record: logging.LogRecord) -> bool:
        msg, info = str(record.msg), record.levelno == logging.INFO
        args = record.args if isinstance(record.args, tuple) else ()
        from_source = record.name == REUSE_SOURCE
        if info and from_source and msg == RUN_HEADER:
            self.release()
            self.held = record
            return False
        if info and from_source and msg.startswith("reusing "):
            held, self.held = self.held, None  # (cleared first: the DEBUG line below comes back through this filter)
            if held is not None:
                held_args = held.args if isinstance(held.args, tuple) else ()
                self.budgets.add("; weights: ".join(map(str, held_args[3:5])))
                self._debug(held)
            self.reused.append((str(args[0]) if args else "", str(args[1]) if len(args) > 1 else "not recorded"))
            self._debug(record)
            return False
        if info and record.name == TWIN_SOURCE and msg.startswith("%s trains exactly what %s trained"):
            self.twins.append((str(args[0]) if args else "", str(args[1]) if len(args) > 1 else ""))
            self._debug(record)
            return False
        if info and record.name == CAM_SOURCE and msg.startswith("Grad-CAM results reused from"):
            self.cams += 1
            self._debug(record)
            return False
        self.release()
        return True


def reuse_line(
    reused: list[tuple[str, str]],
    roots: dict[str, str] | None = None,
    unit: str = "experiment",
    budgets: set[str] | frozenset[str] = frozenset(),
    cams: int = 0,
) -> str:
    """One line for a batch of reused runs (checkpoint path, commit trained at): how many, from where, how many
    UNITs (run folders' parents) times how many seeds, the commits they were trained at, their budget (when one) and
    how many brought their Grad-CAM results along."""
    if not reused:
        return ""
    paths = [Path(tidy(p, roots)) for p, _ in reused]
    folders = sorted({str(p.parent.parent) for p in paths})
    seeds = sorted({p.parent.name.removeprefix("seed") for p in paths}, key=lambda s: (len(s), s))
    n, k = len(reused), len(folders)
    where = os.path.commonpath(folders) if k > 1 else folders[0]
    seed_words = f"seed{'s' if len(seeds) != 1 else ''} {', '.join(seeds)}"
    shape = f"{k} {unit}s x {len(seeds)} seeds, {seed_words}" if k > 1 else seed_words
    if n != k * len(seeds):
        shape += " (not every one at every seed)"
    commits = sorted({c for _, c in reused})
    extra = f"; {next(iter(budgets))}" if len(budgets) == 1 else ""
    extra += f"; Grad-CAM results reused for {cams}" if cams else ""
    return (
        f"reused {n} finished run{'s' if n != 1 else ''} from {where} ({shape}; trained at "
        f"commit{'s' if len(commits) != 1 else ''} {', '.join(commits)}{extra}); delete a run folder to retrain it"
    )


def twin_line(twins: list[tuple[str, str]], roots: dict[str, str] | None = None) -> str:
    """One line for a batch of run folders started from a twin's checkpoint (studies.run_config.adopt_twin): which
    folders, from which, at which seeds."""
    pairs = sorted({(str(Path(tidy(d, roots)).parent), str(Path(tidy(t, roots)).parent)) for d, t in twins})
    seeds = sorted({Path(d).name.removeprefix("seed") for d, _ in twins}, key=lambda x: (len(x), x))
    what = "; ".join(f"{d} from {t}" for d, t in pairs)
    n = len(twins)
    return (
        f"{n} run folder{'s' if n != 1 else ''} train{'s' if n == 1 else ''} exactly what another entry trained "
        f"(config, holdout and data): {what} (seed{'s' if len(seeds) != 1 else ''} {', '.join(seeds)}); "
        "its checkpoint is re-evaluated here, not retrained"
    )


@contextlib.contextmanager
def reuse_summary(roots: dict[str, str] | None = None, unit: str = "experiment"):
    """Within the block, the reuse notices of finished runs are collected instead of shown one line each (notebook
    10 printed about 150), and one summary line (reuse_line) is printed at its end; each notice stays in the log at
    DEBUG."""
    collector = _ReuseCollector()
    # on the handlers that show the library's log (a notebook's): they see every line in order, so a held header
    # is released before its run's next line from any module; without such a handler, on the source logger
    targets = list(logging.getLogger("pneumolib").handlers) or [logging.getLogger(REUSE_SOURCE)]
    for t in targets:
        t.addFilter(collector)
    try:
        yield collector.reused
    finally:
        collector.release()
        for t in targets:
            t.removeFilter(collector)
        if collector.twins:
            print(twin_line(collector.twins, roots))
        if collector.reused:
            print(reuse_line(collector.reused, roots, unit, collector.budgets, collector.cams))
