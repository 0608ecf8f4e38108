"""Where landed batches live and how to read them: one Parquet file per day, features and
labels in separate folders because labels arrive days after the features they describe.

    <landing>/features/2026-01-05.parquet   customers seen on 5 January
    <landing>/labels/2026-01-05.parquet     their churn labels, landed a few days later

`landed` is the one way to list a landing folder; it knows the naming rule (BATCH_NAME).
A `*.parquet` file whose name is not a date is listed apart, as misnamed: the training
pipeline quarantines it (rule `file_name`), everything else leaves it alone. Hidden files
(`.DS_Store`, `._2026-01-05.parquet`), files whose name does not end in `.parquet`
(`notes.txt`, a partial `2026-01-05.parquet.tmp`) and folders are not landed batches and are
not listed at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa

from shared.schema import DATE, ID, LABEL

# What reading a file that is not a whole Parquet batch raises (pyarrow 25, pandas 2.3):
# ArrowInvalid (a ValueError) for an empty, truncated or non-Parquet file; OSError for a
# corrupt page or footer; ValueError or TypeError for pandas metadata it cannot parse.
_UNREADABLE = (pa.ArrowException, OSError, ValueError, TypeError)


class UnreadableBatch(ValueError):
    """A landed file that cannot be read as a batch: empty, truncated, not Parquet, or with
    a schema that cannot be read. The message names the file and the reason."""


def features_dir(landing: Path) -> Path:
    return Path(landing) / "features"


def labels_dir(landing: Path) -> Path:
    return Path(landing) / "labels"


def batch_path(folder: Path, day: date) -> Path:
    return Path(folder) / f"{day.isoformat()}.parquet"


BATCH_NAME = "YYYY-MM-DD.parquet"  # the naming rule: the day a batch belongs to, and nothing else
_BATCH_NAME = re.compile(r"\d{4}-\d{2}-\d{2}\.parquet")


def day_of(path: Path) -> date:
    """The day a landed file belongs to, from its name; ValueError when the name is not
    BATCH_NAME (`date.fromisoformat` alone would also take `20260105` or `2026-W02-1`)."""
    name = Path(path).name
    if _BATCH_NAME.fullmatch(name):
        try:
            return date.fromisoformat(name.removesuffix(".parquet"))
        except ValueError:  # 2026-02-30
            pass
    raise ValueError(f"{name}: name is not {BATCH_NAME}")


def is_batch_name(path: Path) -> bool:
    try:
        day_of(path)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Landed:
    """The Parquet files in one landing folder: `batches` named BATCH_NAME, oldest first,
    and `misnamed`, the other `*.parquet` files (a contract violation, rule `file_name`)."""

    batches: list[Path]
    misnamed: list[Path]


def landed(folder: Path) -> Landed:
    """The one way to list a landing folder (`features/` or `labels/`): see the module's
    docstring for what is listed. A folder that does not exist lists nothing."""
    folder = Path(folder)
    files = [
        path
        for path in (folder.iterdir() if folder.is_dir() else [])
        if not path.name.startswith(".")
        and path.suffix.lower() == ".parquet"  # 2026-01-05.PARQUET is a misnamed batch
        and path.is_file()
    ]
    return Landed(
        batches=sorted(p for p in files if is_batch_name(p)),
        misnamed=sorted(p for p in files if not is_batch_name(p)),
    )


def feature_files(landing: Path) -> list[Path]:
    """Every landed feature batch, oldest first."""
    return landed(features_dir(landing)).batches


def label_files(landing: Path) -> list[Path]:
    """Every landed label file, oldest first."""
    return landed(labels_dir(landing)).batches


def misnamed_files(landing: Path) -> list[Path]:
    """The `*.parquet` files in `features/` and `labels/` whose name is not BATCH_NAME."""
    return landed(features_dir(landing)).misnamed + landed(labels_dir(landing)).misnamed


def labelled_feature_files(landing: Path) -> list[Path]:
    """Feature batches whose labels have landed too, oldest first: what training can use."""
    labelled = {p.name for p in label_files(landing)}
    return [p for p in feature_files(landing) if p.name in labelled]


def read_batch(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A landed Parquet file as a DataFrame (only `columns`, if given).

    Raises UnreadableBatch, naming the file, when it cannot be read as a batch; a file that
    is not there is not a bad batch, and raises FileNotFoundError as usual.
    """
    try:
        return pd.read_parquet(path, columns=columns)
    except FileNotFoundError:
        raise
    except _UNREADABLE as error:
        path = Path(path)
        size = path.stat().st_size if path.is_file() else 0
        raise UnreadableBatch(
            f"{path.parent.name}/{path.name} cannot be read as a Parquet batch ({size} bytes): "
            f"{type(error).__name__}: {error}"
        ) from error


def label_file_for(feature_file: Path) -> Path:
    """The label file that belongs to a feature batch (it may not have landed yet)."""
    feature_file = Path(feature_file)
    return labels_dir(feature_file.parent.parent) / feature_file.name


def load_labelled(feature_files: list[Path]) -> pd.DataFrame:
    """Feature batches joined with their labels, one row per customer and day.

    Every file must have its label file; batches should have passed `validate` first.
    """
    if not feature_files:
        raise ValueError("no labelled batches to load: generate data first (make data)")
    frames = []
    for path in feature_files:
        features = read_batch(path)
        labels = read_batch(label_file_for(path), columns=[ID, DATE, LABEL])
        joined = features.merge(labels, on=[ID, DATE], how="inner", validate="1:1")
        if len(joined) != len(features):
            # A silent inner join would train on whoever happens to have a label.
            raise ValueError(f"{path.name}: labels for {len(joined)} of {len(features)} customers")
        frames.append(joined)
    frame = pd.concat(frames, ignore_index=True)
    frame[LABEL] = frame[LABEL].astype(int)
    return frame
