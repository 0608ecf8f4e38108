"""Level 0's manual steps around the service: the hand-off copies both files whole, the
prediction client picks customers from the newest batch that meets the contract, and the
training script refuses a landing folder with a file it cannot read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from level0_manual.handoff import handoff
from level0_manual.predict import sample_records
from level0_manual.train import TrainingRefused, TrainSettings
from level0_manual.train import run as train_run
from shared import model_file
from shared.data import feature_files, label_file_for, labelled_feature_files
from shared.schema import FEATURE_NAMES, ID
from shared.simulator import SimulationConfig, simulate


@pytest.fixture
def exported(trained, tmp_path: Path) -> Path:
    folder = tmp_path / "exported"
    model_file.save(trained.pipeline, {"name": "churn", "version": "v1"}, folder)
    return folder


def test_the_handoff_copies_model_and_card_and_leaves_no_partial_files(exported, tmp_path, capsys):
    serving = tmp_path / "serving"
    copies = handoff(exported, serving)
    assert sorted(p.name for p in copies) == ["model.json", "model.skops"]
    assert sorted(p.name for p in serving.iterdir()) == ["model.json", "model.skops"]
    assert model_file.load(serving).card["version"] == "v1"
    out = capsys.readouterr().out
    assert "MANUAL HAND-OFF" in out and f"cp {exported / 'model.skops'}" in out


def test_a_second_handoff_replaces_the_served_model(exported, trained, tmp_path):
    serving = tmp_path / "serving"
    handoff(exported, serving)
    model_file.save(trained.pipeline, {"name": "churn", "version": "v2"}, exported)
    handoff(exported, serving)
    assert model_file.load(serving).card["version"] == "v2"


def test_a_handoff_with_nothing_exported_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.skops"):
        handoff(tmp_path / "empty", tmp_path / "serving")
    assert not (tmp_path / "serving").exists()


def test_sample_records_come_from_the_newest_valid_batch_as_plain_json(tmp_path):
    simulate(tmp_path, SimulationConfig(scenario="data-quality", days=4, rows_per_day=20))
    newest = feature_files(tmp_path)[-1]  # day 3: the "nulls" incident
    assert pd.read_parquet(newest)["avg_delivery_minutes"].isna().any()
    records = sample_records(tmp_path, n=3)
    assert len(records) == 3
    assert all(r[ID].startswith("20260103") for r in records)  # day 2, the newest valid one
    assert set(records[0]) == {ID, *FEATURE_NAMES}
    assert all(type(v) in (int, float, bool, str) for v in records[0].values())


def test_sample_records_without_data_says_how_to_get_some(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        sample_records(tmp_path)


def test_sample_records_skip_a_newest_file_that_cannot_be_read(tmp_path):
    simulate(tmp_path, SimulationConfig(scenario="stable", days=3, rows_per_day=20))
    feature_files(tmp_path)[-1].write_bytes(b"")  # day 2 landed empty
    records = sample_records(tmp_path, n=3)
    assert all(r[ID].startswith("20260102") for r in records)  # day 1, the newest readable one


def test_level0_training_refuses_a_file_that_cannot_be_read_and_names_it(tmp_path):
    simulate(tmp_path / "landing", SimulationConfig(scenario="stable", days=6, rows_per_day=50))
    bad = label_file_for(labelled_feature_files(tmp_path / "landing")[1])
    bad.write_text("churned\nyes\n")  # a label export that is not Parquet
    settings = TrainSettings(
        landing=tmp_path / "landing", export_dir=tmp_path / "out",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )  # fmt: skip
    with pytest.raises(
        TrainingRefused, match=rf"labels/{bad.name}: \*: readable: labels/{bad.name}"
    ):
        train_run(settings)
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()
