"""Check a landed batch against the data contract before anything trains on it.

A failing batch stops the pipeline, so every violation names its column and its rule.
A file that cannot be read as a batch at all (empty, truncated, not Parquet) breaks the
contract too: `validate_file` reports it as rule `readable` instead of raising. So does a
landed file whose name is not a day (`YYYY-MM-DD.parquet`): rule `file_name`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from pandas.api import types as ptypes

from shared.data import BATCH_NAME, UnreadableBatch, is_batch_name, read_batch
from shared.schema import BATCH_COLUMNS, ROW_RULES, Column, RowRule


@dataclass(frozen=True)
class Violation:
    """One broken rule: which column, which rule, how many rows, in words."""

    column: str
    rule: str
    message: str
    rows: int = 0


@dataclass(frozen=True)
class ValidationResult:
    """What `validate` found: `ok` is False when any rule is broken."""

    rows: int
    violations: tuple[Violation, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        """One line per violation, e.g. 'age: max: 12 rows above 100'."""
        if self.ok:
            return f"ok ({self.rows} rows)"
        return "; ".join(f"{v.column}: {v.rule}: {v.message}" for v in self.violations)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "violations": [asdict(v) for v in self.violations],
        }


def _dtype_ok(series: pd.Series, column: Column) -> bool:
    values = series.dropna()
    if column.kind == "int":
        # A null turns a pandas int column into float: accept floats that are whole numbers
        # here and let the null rule report the nulls, instead of reporting the column twice.
        if ptypes.is_bool_dtype(series):
            return False
        if ptypes.is_integer_dtype(series):
            return True
        return ptypes.is_float_dtype(series) and bool((values == values.round()).all())
    if column.kind == "float":
        return ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series)
    if column.kind in ("bool", "label"):
        return ptypes.is_bool_dtype(series) or (
            ptypes.is_numeric_dtype(series) and bool(values.isin([0, 1]).all())
        )
    if column.kind == "date":
        return ptypes.is_datetime64_any_dtype(series)
    # id and category: text
    return bool(values.map(lambda v: isinstance(v, str)).all())


def _check_column(series: pd.Series, column: Column) -> list[Violation]:
    found: list[Violation] = []
    nulls = int(series.isna().sum())
    if nulls and not column.nullable:
        found.append(Violation(column.name, "not_null", f"{nulls} null values", nulls))
    if not _dtype_ok(series, column):
        found.append(
            Violation(
                column.name, "dtype", f"expected {column.kind}, got {series.dtype}", len(series)
            )
        )
        return found  # range and category checks are meaningless on the wrong type
    values = series.dropna()
    if column.min is not None:
        below = int((values < column.min).sum())
        if below:
            found.append(Violation(column.name, "min", f"{below} rows below {column.min}", below))
    if column.max is not None:
        above = int((values > column.max).sum())
        if above:
            found.append(Violation(column.name, "max", f"{above} rows above {column.max}", above))
    if column.categories is not None:
        unknown = values[~values.isin(column.categories)]
        if len(unknown):
            seen = ", ".join(sorted(map(str, unknown.unique()))[:5])
            found.append(
                Violation(
                    column.name,
                    "allowed_categories",
                    f"{len(unknown)} rows outside {list(column.categories)}: {seen}",
                    len(unknown),
                )
            )
    return found


def _check_row_rule(batch: pd.DataFrame, rule: RowRule) -> list[Violation]:
    left, right = (batch[name] for name in rule.columns)
    broken = int((~rule.holds(left, right) & left.notna() & right.notna()).sum())
    if not broken:
        return []
    return [Violation(rule.columns[0], rule.name, f"{broken} rows: {rule.description}", broken)]


def validate(
    batch: pd.DataFrame,
    columns: tuple[Column, ...] = BATCH_COLUMNS,
    row_rules: tuple[RowRule, ...] = ROW_RULES,
) -> ValidationResult:
    """Check a landed batch against the contract before anything trains on it.

    A failing batch stops the pipeline, so every violation names its column and rule.
    Pass `columns=LABEL_COLUMNS, row_rules=()` to check a label file.
    """
    found: list[Violation] = []
    if batch.empty:
        found.append(Violation("*", "non_empty", "the batch has no rows"))
    expected = {c.name for c in columns}
    for name in batch.columns:
        if name not in expected:
            found.append(Violation(str(name), "unexpected_column", "not in the contract"))
    for column in columns:
        if column.name not in batch.columns:
            found.append(Violation(column.name, "missing_column", "required by the contract"))
        elif not batch.empty:
            found.extend(_check_column(batch[column.name], column))
    id_columns = [c.name for c in columns if c.kind == "id"]
    if id_columns and id_columns[0] in batch.columns:
        duplicates = int(batch[id_columns[0]].duplicated().sum())
        if duplicates:
            found.append(
                Violation(id_columns[0], "unique", f"{duplicates} duplicate ids", duplicates)
            )
    broken_columns = {v.column for v in found}
    for rule in row_rules:
        if not broken_columns.intersection(rule.columns) and set(rule.columns) <= set(
            batch.columns
        ):
            found.extend(_check_row_rule(batch, rule))
    return ValidationResult(rows=len(batch), violations=tuple(found))


def validate_file(
    path: Path,
    columns: tuple[Column, ...] = BATCH_COLUMNS,
    row_rules: tuple[RowRule, ...] = ROW_RULES,
) -> ValidationResult:
    """Read a landed file and check it like `validate`. A file that cannot be read as a
    batch is a violation of rule `readable` (column "*") naming the file and the reason; a
    file whose name is not BATCH_NAME, of rule `file_name`, before what its content breaks."""
    path = Path(path)
    named = () if is_batch_name(path) else (_misnamed(path),)
    try:
        batch = read_batch(path)
    except UnreadableBatch as error:
        return ValidationResult(0, (*named, Violation("*", "readable", str(error))))
    checked = validate(batch, columns, row_rules)
    return ValidationResult(checked.rows, (*named, *checked.violations))


def _misnamed(path: Path) -> Violation:
    return Violation(
        "*",
        "file_name",
        f"{path.parent.name}/{path.name}: name is not {BATCH_NAME}, so its day is unknown",
    )
