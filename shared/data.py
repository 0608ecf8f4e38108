"""Where landed batches live and how to read them: one Parquet file per day, features and
labels in separate folders because labels arrive days after the features they describe.

    <landing>/features/2026-01-05.parquet   customers seen on 5 January
    <landing>/labels/2026-01-05.parquet     their churn labels, landed a few days later
"""

from __future__ import annotations

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


def day_of(path: Path) -> date:
    """The day a landed file belongs to, from its name."""
    return date.fromisoformat(Path(path).stem)


def feature_files(landing: Path) -> list[Path]:
    """Every landed feature batch, oldest first."""
    return sorted(features_dir(landing).glob("*.parquet"))


def labelled_feature_files(landing: Path) -> list[Path]:
    """Feature batches whose labels have landed too, oldest first: what training can use."""
    labelled = {p.name for p in labels_dir(landing).glob("*.parquet")}
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
