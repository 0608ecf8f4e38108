"""No stray file in the landing folder jams a step that reads it, and quarantine loses
nothing: a misnamed `*.parquet` file, a `notes.txt` or a `.DS_Store` beside the batches is
left out by the replay, monitoring's label loader and level 0's training script; a second
bad file of a name already in quarantine is kept beside the first, each with its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from level0_manual.train import TrainingRefused, TrainSettings
from level0_manual.train import run as train_run
from level1_ct.flows.replay import next_day
from level1_ct.flows.training import QUARANTINE, quarantine
from level1_ct.prediction_log import connect, load_labels
from shared.data import features_dir, label_files, labels_dir
from shared.simulator import SimulationConfig, simulate
from shared.validation import validate_file

CONFIG = SimulationConfig(scenario="stable", days=6, rows_per_day=50, label_delay_days=1)
STRAYS = ["export-final.parquet", "foo.parquet", "notes.txt", ".DS_Store"]


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """Six days landed, and the same strays in both folders (copies of a good batch)."""
    folder = tmp_path / "landing"
    simulate(folder, CONFIG)
    for sub in (features_dir(folder), labels_dir(folder)):
        good = sorted(sub.iterdir())[0]
        for name in STRAYS:
            shutil.copy(good, sub / name)
    return folder


def test_the_replay_continues_after_the_newest_day_whatever_else_lies_there(landing):
    assert next_day(landing, CONFIG.start_date) == CONFIG.days


def test_monitoring_loads_every_label_file_and_leaves_strays_alone(landing, tmp_path):
    loaded = load_labels(connect(f"sqlite:///{tmp_path / 'p.db'}"), landing)
    assert loaded.skipped == {}
    assert loaded.added == CONFIG.rows_per_day * len(label_files(landing))
    assert all((labels_dir(landing) / name).exists() for name in STRAYS)  # not its to move


def test_level0_training_says_it_leaves_misnamed_files_out_and_goes_on(landing, tmp_path, capsys):
    settings = TrainSettings(
        landing=landing, export_dir=tmp_path / "out", n_iter=1, min_auc_lift=2.0,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )  # fmt: skip
    # An impossible lift: it trains on the batches, then refuses before logging anything.
    with pytest.raises(TrainingRefused, match="does not beat the baseline"):
        train_run(settings)
    out = capsys.readouterr().out
    assert f"[1/5] data: {CONFIG.days - 1} labelled daily batches" in out
    for folder in ("features", "labels"):
        for name in ("export-final.parquet", "foo.parquet"):
            assert f"ignored {folder}/{name}: name is not YYYY-MM-DD.parquet" in out
    assert "notes.txt" not in out and ".DS_Store" not in out
    assert "[2/5] validation" in out


def bad_export(landing: Path, name: str, content: bytes) -> Path:
    path = features_dir(landing) / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name", ["2026-01-03.parquet", "export-final.parquet"])
def test_a_second_quarantine_of_the_same_name_keeps_both_with_their_own_reasons(landing, name):
    contents = [b"", b"first,export\n", b"PAR1 truncated"]
    kept = []
    for content in contents:
        path = bad_export(landing, name, content)
        kept.append(quarantine(landing, path, validate_file(path)))
        assert not path.exists()

    folder = landing / QUARANTINE / "features"
    assert len(set(kept)) == 3 and all(p.parent == folder for p in kept)
    assert kept[0].name == name  # the first keeps its name
    assert [p.read_bytes() for p in kept] == contents  # nothing replaced
    reasons = [json.loads(p.with_suffix(".reason.json").read_text()) for p in kept]
    assert [r["quarantined_as"] for r in reasons] == [p.name for p in kept]
    assert all(r["file"] == str(features_dir(landing) / name) for r in reasons)
    rules = [{v["rule"] for v in r["violations"]["violations"]} for r in reasons]
    assert all("readable" in found for found in rules)
    assert len({p.with_suffix(".reason.json") for p in kept}) == 3
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(p.name for p in kept), *(p.with_suffix(".reason.json").name for p in kept)]
    )


def test_quarantine_does_not_overwrite_a_reason_left_without_its_file(landing):
    folder = landing / QUARANTINE / "features"
    folder.mkdir(parents=True)
    (folder / "2026-01-03.reason.json").write_text('{"kept": true}')  # its file was taken away
    path = bad_export(landing, "2026-01-03.parquet", b"")
    target = quarantine(landing, path, validate_file(path))
    assert target.name != "2026-01-03.parquet"
    assert json.loads((folder / "2026-01-03.reason.json").read_text()) == {"kept": True}
    assert target.exists() and target.with_suffix(".reason.json").exists()
