"""What a model card reads: a run folder's records (evaluations kept per cohort, the data's source), made inert."""

from __future__ import annotations

import hashlib
import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import CLASSES
from ..core.io import load_record, make_dir, read_record, save_json
from ..core.runs import RunDir

log = logging.getLogger(__name__)


SPLIT_NAMES = ("train", "val", "test")


KERMANY = {
    "source": 'Kermany, Zhang and Goldbaum, "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images '
    'for Classification", Mendeley Data v2, 2018, doi:10.17632/rscbjbr9sj.2 (paediatric chest '
    'radiographs; the Kaggle "Chest X-Ray Images (Pneumonia)" download)',
    "licence": "CC BY 4.0",
    "license_id": "cc-by-4.0",
    "population": "children aged one to five, frontal chest radiographs from one hospital (Guangzhou Women and "
    "Children's Medical Center; Kermany et al., Cell 2018)",
}


# --- evaluation records -----------------------------------------------------------------------------------
def _sanitise(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "cohort"


def cohort_name(data_dir: str | Path, split: str = "test", adapt: str | None = None) -> str:
    """A file-name-safe name for a cohort: the data folder's name (the parent's, when the folder is itself a
    split folder holding NORMAL/ and PNEUMONIA/), '_<split>' unless the split is test, '.adapt-<mode>' if adapted."""
    p = Path(data_dir).expanduser().resolve()
    if p.name in SPLIT_NAMES and all((p / c).is_dir() for c in CLASSES):
        base, split, where = p.parent.name, p.name, p.parent
    else:
        base, where = p.name, p
    # the folder's name, then a digest of its full path: /a/real and /b/real are two cohorts, two records
    digest = hashlib.sha1(str(where).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    name = f"{_sanitise(base)}-{digest}" + ("" if split == "test" else f"_{split}")
    return name + (f".adapt-{adapt}" if adapt else "")


def record_evaluation(checkpoint: str | Path, record: dict[str, Any], name: str | None = None) -> Path:
    """Write `record` to RUN_DIR/evaluations/<name>.json, RUN_DIR being the checkpoint's folder (atomic)."""
    name = _sanitise(name or record.get("cohort") or "cohort")
    folder = make_dir(RunDir(Path(checkpoint).parent).evaluations, ours=True)  # never through a planted link
    return save_json(record, folder / f"{name}.json")


def load_evaluations(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every evaluation record in RUN_DIR/evaluations, by file name; unreadable files are skipped and logged."""
    folder = RunDir(run_dir).evaluations
    out = []
    if folder.is_symlink():
        log.warning("%s: a symbolic link, not pneumolib's folder; its records are not read", folder)
        return out
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        rec = load_record(p)  # a damaged or planted record is logged and left out
        if rec is not None:
            out.append(dict(rec, _file=p.name))
    return out


# --- reading the run folder -------------------------------------------------------------------------------
def data_source(data_dir: str | None) -> dict[str, str]:
    """Where the training data came from and its licence, when the data folder says so (a README naming
    Kermany et al. or CC BY 4.0, or the data set's own folder name chest_xray); else unknown."""
    if data_dir in (None, "", "fixture"):
        return {
            "source": "the bundled synthetic fixture (pneumolib.data.fixture: phantoms with exact lung and lesion "
            "masks, not patients)",
            "licence": "unknown",
            "license_id": "unknown",
        }
    p = Path(data_dir)
    for readme in [p / n for n in ("README.md", "README.txt", "README")] + [
        p.parent / n for n in ("README.md", "README.txt", "README")
    ]:
        try:
            text = readme.read_text(errors="replace")
        except OSError:
            continue
        if "kermany" in text.lower() or "cc by 4.0" in text.lower():
            return dict(KERMANY, evidence=str(readme))
    if p.name == "chest_xray":
        return dict(KERMANY, evidence=f"the folder name {p.name}")
    return {
        "source": f"{data_dir} (a user's folder; its origin is not recorded)",
        "licence": "unknown",
        "license_id": "unknown",
    }


def _checkpoint_info(run: RunDir) -> dict[str, Any] | None:
    if not run.checkpoint.is_file():
        return None
    from ..models.checkpoint import CheckpointError, read_checkpoint

    try:
        state = read_checkpoint(run.checkpoint)
    except CheckpointError as e:
        log.warning("%s", e)
        return None
    return {k: state.get(k) for k in ("format", "preprocessing", "threshold", "in_channels", "classes", "extra")}


def _md(v: Any) -> Any:
    """Text copied from a record into the card, inert: HTML escaped, one line, no backtick or table bar to break
    out of a code span or a table (a planted record cannot inject markup or headings). Recursive."""
    if isinstance(v, str):
        return html.escape(" ".join(v.split()), quote=False).replace("`", "'").replace("|", "\\|")
    if isinstance(v, dict):
        return {k: _md(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_md(x) for x in v]
    return v


@dataclass
class CardRun:
    """What a card is made from: the run folder's files, read once."""

    run: RunDir
    metrics: dict[str, Any]
    cfg: dict[str, Any]
    ckpt: dict[str, Any] | None
    stress: dict[str, Any] | None
    evals: list[dict[str, Any]]
    source: dict[str, str]

    @property
    def test(self) -> dict[str, Any]:
        return self.metrics.get("test") or {}

    @property
    def name(self) -> str:
        return self.metrics.get("experiment") or self.cfg.get("name") or self.run.path.name

    @property
    def entry(self) -> str:
        return self.metrics.get("entry") or self.cfg.get("entry") or ""

    @property
    def preprocessing(self) -> dict[str, Any]:
        return (self.ckpt or {}).get("preprocessing") or {
            k: self.cfg.get(k) for k in ("image_size", "in_channels", "normalize")
        }


def read_run(run_dir: str | Path) -> CardRun:
    run = RunDir(run_dir)
    if not run.metrics.is_file():
        raise FileNotFoundError(f"{run.metrics}: no metrics.json (is {run.path} a finished run folder?)")
    metrics = read_record(run.metrics)  # RecordError: one line naming the file and what is wrong
    metrics = _md(metrics)
    return CardRun(
        run,
        metrics,
        metrics.get("config") or {},
        _checkpoint_info(run),
        _md(load_record(run.stress)),
        _md(load_evaluations(run.path)),
        data_source(metrics.get("data_dir")),
    )
