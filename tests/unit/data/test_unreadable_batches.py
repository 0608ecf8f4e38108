"""A landed file that cannot be read as a batch (empty, truncated, not Parquet, a schema that
cannot be read) breaks the data contract like any other bad batch: `validate_file` reports it
as rule `readable`, naming the file and the reason, and never raises."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.data import (
    UnreadableBatch,
    batch_path,
    features_dir,
    labels_dir,
    load_labelled,
    read_batch,
)
from shared.schema import LABEL_COLUMNS
from shared.simulator import SimulationConfig, generate_day
from shared.validation import validate, validate_file

CONFIG = SimulationConfig(rows_per_day=50)


def _unreadable_schema(good: Path, path: Path) -> None:
    """A Parquet file whose pandas schema (the footer's metadata) is not JSON."""
    table = pq.read_table(good)
    metadata = {**table.schema.metadata, b"pandas": b"{not json"}
    pq.write_table(table.replace_schema_metadata(metadata), path)


# Each breaks a good Parquet file (`good`) into a bad one at `path`.
BREAKAGES: dict[str, Callable[[Path, Path], None]] = {
    "empty": lambda good, path: path.write_bytes(b""),
    "truncated": lambda good, path: path.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
    "footer only": lambda good, path: path.write_bytes(
        good.read_bytes()[good.stat().st_size // 2 :]
    ),
    "not parquet": lambda good, path: path.write_text("customer_id,age\nc-1,30\n"),
    "unreadable schema": _unreadable_schema,
}


@pytest.fixture
def day(tmp_path: Path) -> tuple[Path, Path]:
    """Day 0's feature and label files, landed whole."""
    features, labels = generate_day(CONFIG, 0)
    for folder in (features_dir(tmp_path), labels_dir(tmp_path)):
        folder.mkdir(parents=True)
    paths = (
        batch_path(features_dir(tmp_path), CONFIG.day_date(0)),
        batch_path(labels_dir(tmp_path), CONFIG.day_date(0)),
    )
    features.to_parquet(paths[0], index=False)
    labels.to_parquet(paths[1], index=False)
    return paths


def broken(good: Path, kind: str) -> Path:
    """`good` replaced by its broken version (same name, as a bad export would land)."""
    copy = good.with_suffix(".good")
    good.rename(copy)
    BREAKAGES[kind](copy, good)
    copy.unlink()
    return good


@pytest.mark.parametrize("kind", BREAKAGES)
def test_an_unreadable_feature_file_is_a_readable_violation_naming_the_file(day, kind):
    path = broken(day[0], kind)
    result = validate_file(path)
    assert not result.ok and result.rows == 0
    [violation] = result.violations
    assert (violation.column, violation.rule) == ("*", "readable")
    assert path.name in violation.message and "cannot be read" in violation.message
    assert f"*: readable: features/{path.name}" in result.summary()
    assert json.loads(json.dumps(result.to_dict()))["violations"][0]["rule"] == "readable"


@pytest.mark.parametrize("kind", BREAKAGES)
def test_an_unreadable_label_file_is_a_readable_violation_too(day, kind):
    path = broken(day[1], kind)
    result = validate_file(path, columns=LABEL_COLUMNS, row_rules=())
    assert [(v.column, v.rule) for v in result.violations] == [("*", "readable")]
    assert f"labels/{path.name}" in result.summary()


def test_the_reason_says_what_is_wrong_with_an_empty_file(day):
    summary = validate_file(broken(day[0], "empty")).summary()
    assert "0 bytes" in summary


@pytest.mark.parametrize("kind", BREAKAGES)
def test_reading_an_unreadable_file_raises_one_error_naming_the_file(day, kind):
    path = broken(day[0], kind)
    with pytest.raises(UnreadableBatch, match=path.name):
        read_batch(path)


def test_a_file_that_is_not_there_is_not_a_bad_batch(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_batch(tmp_path / "2026-01-01.parquet")
    with pytest.raises(FileNotFoundError):
        validate_file(tmp_path / "2026-01-01.parquet")


def test_a_readable_file_is_checked_like_the_frame_it_holds(day):
    assert validate_file(day[0]) == validate(pd.read_parquet(day[0]))
    assert validate_file(day[0]).ok
    assert validate_file(day[1], columns=LABEL_COLUMNS, row_rules=()).ok


@pytest.mark.parametrize(
    ("change", "column", "rule"),
    [(lambda t: t.set_column(t.schema.get_field_index("age"), "age",
                             pa.array([str(v) for v in t["age"].to_pylist()])), "age", "dtype"),
     (lambda t: t.drop_columns(["city_tier"]), "city_tier", "missing_column"),
     (lambda t: t.select([]), "customer_id", "missing_column")],
)  # fmt: skip
def test_a_parquet_file_with_the_wrong_schema_names_the_column(day, change, column, rule):
    pq.write_table(change(pq.read_table(day[0])), day[0])
    result = validate_file(day[0])
    assert (column, rule) in {(v.column, v.rule) for v in result.violations}, result.summary()


def test_loading_a_batch_whose_label_file_cannot_be_read_names_the_label_file(day):
    label_file = broken(day[1], "truncated")
    with pytest.raises(UnreadableBatch, match=f"labels/{label_file.name}") as raised:
        load_labelled([day[0]])
    assert isinstance(raised.value, ValueError)
