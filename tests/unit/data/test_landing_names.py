"""The naming rule of a landing folder: a batch is `YYYY-MM-DD.parquet`. Every listing goes
through `shared.data.landed`: a `*.parquet` file with another name is listed apart, as
misnamed (the training pipeline quarantines it, rule `file_name`); hidden files, files that
do not end in `.parquet` and folders are not listed at all. No listing raises on a name."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from shared.data import (
    day_of,
    feature_files,
    features_dir,
    label_files,
    labelled_feature_files,
    labels_dir,
    landed,
    misnamed_files,
)
from shared.schema import LABEL_COLUMNS
from shared.simulator import SimulationConfig, simulate
from shared.validation import validate_file

CONFIG = SimulationConfig(days=4, rows_per_day=30, label_delay_days=1)

# *.parquet files whose name is not a day: each is a misnamed batch.
MISNAMED = [
    "foo.parquet",
    "export-final.parquet",
    "20260105.parquet",  # date.fromisoformat takes it in Python 3.11: not the rule
    "2026-W02-1.parquet",  # an ISO week date, idem
    "2026-02-30.parquet",  # not a day
    "2026-01-05 (1).parquet",  # a browser's second download
    "2026-01-05.PARQUET",
    "2026-1-5.parquet",
]
# Not landed batches at all: never listed.
IGNORED = [
    "notes.txt",
    ".DS_Store",
    "._2026-01-05.parquet",  # macOS resource fork
    ".2026-01-09.parquet",  # a hidden partial upload
    "2026-01-09.parquet.tmp",
    "README",
]


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """Four days landed (labels a day later), and every kind of stray file in both folders."""
    simulate(tmp_path, CONFIG)
    good = sorted(features_dir(tmp_path).iterdir())[0]
    for folder in (features_dir(tmp_path), labels_dir(tmp_path)):
        for name in MISNAMED:
            shutil.copy(good, folder / name)
        for name in IGNORED:
            (folder / name).write_text("not a batch")
        (folder / "2026-01-09.parquet").mkdir()  # a folder is not a file
    return tmp_path


def test_only_files_named_by_their_day_are_batches_oldest_first(landing):
    days = [CONFIG.day_date(d) for d in range(CONFIG.days)]
    assert [day_of(p) for p in feature_files(landing)] == days
    assert [day_of(p) for p in label_files(landing)] == days[:-1]  # labels land a day later
    assert [day_of(p) for p in labelled_feature_files(landing)] == days[:-1]


def test_misnamed_parquet_files_are_listed_apart_and_nothing_else_is_listed(landing):
    for folder in (features_dir(landing), labels_dir(landing)):
        listed = landed(folder)
        assert sorted(p.name for p in listed.misnamed) == sorted(MISNAMED)
        assert all(p.parent == folder for p in [*listed.batches, *listed.misnamed])
        assert not {p.name for p in [*listed.batches, *listed.misnamed]} & set(IGNORED)
    assert sorted(f"{p.parent.name}/{p.name}" for p in misnamed_files(landing)) == sorted(
        f"{folder}/{name}" for folder in ("features", "labels") for name in MISNAMED
    )


def test_a_landing_folder_that_does_not_exist_lists_nothing(tmp_path):
    assert feature_files(tmp_path) == [] and misnamed_files(tmp_path) == []


@pytest.mark.parametrize("name", MISNAMED)
def test_the_day_of_a_misnamed_file_is_an_error_naming_the_rule(name):
    with pytest.raises(ValueError, match=r"name is not YYYY-MM-DD\.parquet"):
        day_of(Path("features") / name)


def test_the_day_of_a_batch_is_its_name():
    assert day_of(Path("features/2026-01-05.parquet")) == date(2026, 1, 5)


@pytest.mark.parametrize("folder", ["features", "labels"])
def test_a_misnamed_file_breaks_the_contract_by_its_name_and_its_content_is_checked_too(
    landing, folder
):
    path = Path(landing) / folder / "export-final.parquet"
    options = {"columns": LABEL_COLUMNS, "row_rules": ()} if folder == "labels" else {}
    result = validate_file(path, **options)
    assert not result.ok and result.rows == CONFIG.rows_per_day
    # its copy is a good feature batch: as a label file, its extra columns break the contract
    rules = [v.rule for v in result.violations]
    assert rules[0] == "file_name" and (rules == ["file_name"]) == (folder == "features")
    assert (
        f"*: file_name: {folder}/export-final.parquet: name is not YYYY-MM-DD.parquet"
        in result.summary()
    )

    path.write_bytes(b"")  # and an empty misnamed export breaks both rules
    assert [v.rule for v in validate_file(path, **options).violations] == [
        "file_name",
        "readable",
    ]


def test_a_batch_named_by_its_day_has_no_name_violation(landing):
    assert validate_file(feature_files(landing)[0]).ok
