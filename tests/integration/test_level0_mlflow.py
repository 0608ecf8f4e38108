"""Level 0's training against a real MLflow tracking server process (SQLite, proxied
artifacts): the run holds the params, metrics, lineage and a loadable model, and the
exported file is the same model."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from level0_manual.handoff import handoff
from level0_manual.train import TrainingRefused, TrainSettings, run
from shared import model_card, model_file
from shared.data import label_file_for, labelled_feature_files
from shared.features import feature_frame
from shared.lineage import data_version
from shared.servers import MlflowServer, free_port, mlflow_server
from shared.simulator import SimulationConfig, simulate


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(MlflowServer(root=root, port=free_port())) as running:
        yield running


@pytest.fixture(scope="module")
def trained_run(server, landing, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("exported")
    settings = TrainSettings(
        landing=landing, export_dir=export_dir, mlflow_tracking_uri=server.url, n_iter=2,
        experiment="level0-test",
    )  # fmt: skip
    card = run(settings)
    return settings, card, MlflowClient(server.url).get_run(card["mlflow_run_id"])


def test_the_run_is_logged_with_params_metrics_and_lineage(trained_run, landing):
    settings, card, logged = trained_run
    params, metrics, tags = logged.data.params, logged.data.metrics, logged.data.tags
    assert {"learning_rate", "max_iter", "train_rows", "holdout_rows", "seed"} <= set(params)
    assert {"roc_auc", "f1", "precision", "recall", "log_loss", "baseline/roc_auc"} <= set(metrics)
    assert metrics["roc_auc"] > metrics["baseline/roc_auc"] + settings.min_auc_lift
    assert any(k.startswith("slice/platform/") for k in metrics)
    assert tags["level"] == "0"
    features = labelled_feature_files(landing)
    learned_from = features + [label_file_for(f) for f in features]  # labels count too
    assert tags["data_version"] == data_version(learned_from) == card["data_version"]
    assert tags["code_version"] == card["code_version"]


def test_the_run_holds_a_loadable_model_that_matches_the_exported_file(
    trained_run, labelled, server
):
    settings, card, logged = trained_run
    mlflow.set_tracking_uri(server.url)
    from_mlflow = mlflow.sklearn.load_model(f"runs:/{logged.info.run_id}/model")
    exported = model_file.load(settings.export_dir)
    X = feature_frame(labelled)
    np.testing.assert_array_equal(from_mlflow.predict_proba(X), exported.pipeline.predict_proba(X))
    assert exported.card["mlflow_run_id"] == logged.info.run_id


def test_the_model_is_logged_as_a_model_of_the_run_with_a_signature(trained_run, server):
    _, _, logged = trained_run
    client = MlflowClient(server.url)
    [model] = client.search_logged_models(experiment_ids=[logged.info.experiment_id])
    assert model.source_run_id == logged.info.run_id and model.name == "model"
    signature = mlflow.models.get_model_info(model.model_uri).signature
    assert "age" in signature.inputs.input_names()


def test_the_run_keeps_the_validation_report_and_lineage_as_artifacts(trained_run, server):
    _, _, logged = trained_run
    names = {a.path for a in MlflowClient(server.url).list_artifacts(logged.info.run_id)}
    assert {"data_validation.json", "lineage.json"} <= names


def test_the_exported_model_has_a_card_for_a_person_that_the_handoff_carries(
    trained_run, server, tmp_path: Path
):
    """Level 0's model card: the sections of every level's, with the one check a person made
    in place of a gate, and the groups' figures that nobody holds at this level."""
    settings, card, logged = trained_run
    readable = (settings.export_dir / model_card.FILE).read_text()
    assert f"# Model card: churn, version {card['version']}" in readable
    assert all(f"\n## {section}\n" in readable for section in model_card.SECTIONS)
    assert "No gate judged it. The one check the person who trained it made **passed**" in readable
    assert "hold-out ROC AUC over the baseline's" in readable
    assert "| age_band | equalized odds difference |" in readable
    assert f"`{card['data_version']}`" in readable and logged.info.run_id in readable
    client = MlflowClient(server.url)
    logged_card = client.download_artifacts(logged.info.run_id, model_card.FILE, str(tmp_path))
    assert Path(logged_card).read_text() == readable
    copies = handoff(settings.export_dir, tmp_path / "serving")
    assert (tmp_path / "serving" / model_card.FILE).read_text() == readable
    assert copies[-1].name == model_card.FILE


def test_a_bad_batch_stops_training_before_anything_is_logged_or_exported(server, tmp_path: Path):
    simulate(
        tmp_path / "landing", SimulationConfig(scenario="data-quality", days=8, rows_per_day=200)
    )
    settings = TrainSettings(
        landing=tmp_path / "landing", export_dir=tmp_path / "out",
        mlflow_tracking_uri=server.url, experiment="level0-bad-data",
    )  # fmt: skip
    with pytest.raises(TrainingRefused, match=r"avg_delivery_minutes: not_null"):
        run(settings)
    assert not (tmp_path / "out").exists()
    assert MlflowClient(server.url).get_experiment_by_name("level0-bad-data") is None


def test_an_unreachable_tracking_server_is_reported_at_once(landing, tmp_path: Path):
    settings = TrainSettings(
        landing=landing, export_dir=tmp_path, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}"
    )
    with pytest.raises(TrainingRefused, match="make mlflow"):
        run(settings)
