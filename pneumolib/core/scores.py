"""The per-film score file (scores_test.csv, scores_val.csv, `evaluate --scores`): its columns, and its one reader.

`analysis.evaluate.Scores.to_csv` writes it; every reader (the verdicts, the ensemble candidates, notebook 00's
account and levers) goes through `read_scores`, which checks the file before anything is computed from it, so that
a hand-edited or truncated file is one line naming it, never a wrong number."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..core.config import CLASSES
from ..core.io import RecordError

if TYPE_CHECKING:  # pandas is imported when a file is read, not with the package
    import pandas as pd

# what Scores.to_csv writes, in order; more columns may follow (evaluate's OOD distance and flag)
COLUMNS = ("path", "patient", "split", "label", "p_pneumonia", "prediction")
REQUIRED = ("path", "patient", "label", "p_pneumonia", "prediction")  # 'split' came later: older files lack it


def read_scores(path: str | Path, split: str | None = None) -> "pd.DataFrame":
    """The films of a score file, one row each, as written, plus `y` (1 = PNEUMONIA) and `called` (1 = called
    PNEUMONIA at the run's threshold). SPLIT keeps only that split's rows (a file without the column counts as
    all of that split).

    Raises:
        RecordError: a missing column, a label or prediction that is not NORMAL/PNEUMONIA, or a P(PNEUMONIA) that
            is not a number in [0, 1]; the message names the file, the row and the problem.
        FileNotFoundError: no such file.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not a score file ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise RecordError(f"{path}: not a score file (no column {', '.join(missing)})")
    if split is not None and "split" in df.columns:
        df = df[df["split"] == split]
    df = df.reset_index(drop=True)
    for col in ("label", "prediction"):
        bad = ~df[col].isin(CLASSES)
        if bad.any():
            i = int(bad.idxmax())
            raise RecordError(f"{path}: row {i + 2}: {col} {df[col][i]!r} is not {' or '.join(CLASSES)}")
    p = pd.to_numeric(df["p_pneumonia"], errors="coerce")
    bad = p.isna() | (p < 0) | (p > 1)
    if bad.any():
        i = int(bad.idxmax())
        raise RecordError(f"{path}: row {i + 2}: p_pneumonia {df['p_pneumonia'][i]!r} is not a number in [0, 1]")
    df["p_pneumonia"] = p.astype(float)
    df["y"] = (df["label"] == CLASSES[1]).astype(int)
    df["called"] = (df["prediction"] == CLASSES[1]).astype(int)
    return df
