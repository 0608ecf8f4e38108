"""Level 1's training pipeline as Prefect flow runs against real MLflow and Prefect servers:
a good batch moves the champion and the service follows; a worse model is stopped by the
gate; a batch that breaks the contract, a file that cannot be read at all, or a `.parquet`
file whose name is not a day, stops the run before training and waits in quarantine (a second
bad file of the same name beside the first); a retrain on the same data is not a new
champion. The champion only ever moves on a passed gate."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from level1_ct import registry
from level1_ct.flows.landing import watch_landing
from level1_ct.flows.training import QUARANTINE, training_pipeline
from level1_ct.service import ServiceSettings, create_app
from level1_ct.settings import get_settings
from shared.data import batch_path, feature_files, features_dir, labels_dir
from shared.schema import example_record
from shared.servers import MlflowServer, free_port, mlflow_server
from shared.simulator import generate_day, land_day
from tests.conftest import SMALL
from tests.integration.level1 import pipeline_env, prefect, wait_for

EXPERIMENT = "level1-ct-test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, landing):
    root = tmp_path_factory.mktemp("level1")
    own_landing = root / "landing"
    shutil.copytree(landing, own_landing)  # the runs add and quarantine batches
    with (
        mlflow_server(MlflowServer(root=root / "mlflow", port=free_port())) as mlflow,
        prefect(root) as orchestrator,
    ):
        env = {
            "MLFLOW_TRACKING_URI": mlflow.url,
            "L1_LANDING": str(own_landing),
            "L1_EXPERIMENT": EXPERIMENT,
            "L1_N_ITER": "3",
            "L1_SEED": "7",
            "PREDICTION_STORE_URL": f"sqlite:///{root / 'predictions.db'}",
        }
        with pipeline_env(orchestrator, env):
            yield {"mlflow": mlflow, "landing": own_landing, "root": root}


def champion(stack) -> registry.ModelRef | None:
    return registry.lookup(MlflowClient(stack["mlflow"].url), "churn")


def flow_message(state) -> str:
    return state.message or ""


@pytest.fixture(scope="module")
def first_champion(stack):
    state = training_pipeline(reason="test", return_state=True)
    assert state.is_completed(), flow_message(state)
    found = champion(stack)
    assert found is not None, "the first passing run must create a champion"
    return found


def mlflow_run_of(stack, state):
    """The MLflow run a flow run logged to (tagged with the Prefect flow run id)."""
    [run] = MlflowClient(stack["mlflow"].url).search_runs(
        [MlflowClient(stack["mlflow"].url).get_experiment_by_name(EXPERIMENT).experiment_id],
        filter_string=f"tags.prefect_flow_run_id = '{state.state_details.flow_run_id}'",
    )
    return run


def test_a_good_batch_registers_a_version_that_becomes_champion_and_is_served(
    stack, first_champion
):
    before = champion(stack)
    for day in (SMALL.days, SMALL.days + 1):  # two more days land, with their labels
        land_day(stack["landing"], SMALL, day)
    state = training_pipeline(reason="new-data", return_state=True)

    assert state.is_completed(), flow_message(state)
    assert "promoted to champion" in flow_message(state)
    after = champion(stack)
    assert int(after.version) > int(before.version)
    client = MlflowClient(stack["mlflow"].url)
    aliases = client.get_registered_model("churn").aliases
    assert aliases["champion"] == aliases["challenger"] == after.version
    assert aliases["previous-champion"] == before.version
    version = client.get_model_version("churn", after.version)
    assert version.tags["gate"] == "passed" and version.tags["data_version"].startswith("sha256:")
    assert version.tags["prefect_flow_run_id"] == str(state.state_details.flow_run_id)
    run = mlflow_run_of(stack, state)
    assert run.info.status == "FINISHED" and run.data.tags["trigger"] == "new-data"
    assert {"roc_auc", "baseline/roc_auc", "champion/roc_auc", "data/drift_share"} <= set(
        run.data.metrics
    )
    assert run.data.tags["champion_before"] == before.version
    logged = mlflow.models.get_model_info(f"models:/churn/{after.version}")
    assert logged.signature is not None and logged.saved_input_example_info is not None
    assert "age" in logged.signature.inputs.input_names()
    assert {"fairness/age_band/equalized_odds_difference",
            "fairness/platform/ios/true_positive_rate"} <= set(run.data.metrics)  # fmt: skip
    attributions = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/attributions.json")
    top = next(iter(attributions["mean_abs_attribution"]))
    assert run.data.metrics[f"attribution/{top}"] == max(
        v for k, v in run.data.metrics.items() if k.startswith("attribution/"))  # fmt: skip
    card = model_card(client, version)
    assert f"| 1 | {top} | " in card  # the card's top attributions are the run's
    assert f"# Model card: churn, version {after.version}" in card
    assert f"champion before (version {before.version})" in card
    assert "The gate **passed**" in card and version.tags["data_version"] in card

    # The service follows the alias: it serves the new champion, with its lineage.
    settings = ServiceSettings(
        mlflow_tracking_uri=stack["mlflow"].url,
        prediction_store_url=f"sqlite:///{stack['root'] / 'predictions.db'}",
    )
    with TestClient(create_app(settings)) as service:
        shown = service.get("/model").json()
        assert shown["version"] == after.version and shown["alias"] == "champion"
        assert shown["data_version"] == version.tags["data_version"]
        assert shown["run_id"] == run.info.run_id
        answer = service.post("/predict", json=example_record()).json()
        assert answer["model_version"] == after.version


def test_a_worse_model_is_rejected_by_the_gate_and_the_champion_stays(stack, first_champion):
    before = champion(stack)
    # Two boosting rounds of two-leaf trees: far weaker than any searched model.
    weak = {"max_iter": 2, "max_leaf_nodes": 2, "learning_rate": 0.03}
    state = training_pipeline(reason="exercise", fixed_params=weak, return_state=True)

    assert state.is_completed(), "a rejection is an answer, not a failure"
    assert "rejected by the gate" in flow_message(state)
    assert "roc_auc >= champion + margin" in flow_message(state)
    assert champion(stack).version == before.version
    client = MlflowClient(stack["mlflow"].url)
    aliases = client.get_registered_model("churn").aliases
    assert aliases["challenger"] != before.version  # registered, but only as challenger
    assert client.get_model_version("churn", aliases["challenger"]).tags["gate"] == "rejected"
    run = mlflow_run_of(stack, state)
    assert run.data.tags["gate"] == "rejected"
    assert "roc_auc >= champion + margin" in run.data.tags["gate_summary"]
    assert run.data.metrics["roc_auc"] < run.data.metrics["champion/roc_auc"]
    # A rejected version has its card too, with the check it failed
    card = model_card(client, client.get_model_version("churn", aliases["challenger"]))
    assert "The gate **rejected**" in card
    assert "| **failed** | roc_auc >= champion + margin" in card


def test_a_fairness_bar_no_model_meets_rejects_naming_the_groups(
    stack, first_champion, monkeypatch
):
    """Exercise 5 of the level-1 guide: with the groups held to 5 points, the gate rejects,
    naming the city tiers' rate and groups; the version's card shows the failed check."""
    before = champion(stack)
    monkeypatch.setenv("L1_MAX_EQUALIZED_ODDS_DIFFERENCE", "0.05")
    get_settings.cache_clear()
    try:  # pinned params: a recipe of its own, so a candidate and not the champion's twin
        state = training_pipeline(reason="exercise", return_state=True, fixed_params={
            "learning_rate": 0.05, "max_iter": 200, "max_leaf_nodes": 31,
            "min_samples_leaf": 20, "l2_regularization": 0.1})  # fmt: skip
    finally:
        monkeypatch.delenv("L1_MAX_EQUALIZED_ODDS_DIFFERENCE")
        get_settings.cache_clear()
    assert state.is_completed(), flow_message(state)
    message = flow_message(state)
    assert "rejected by the gate" in message
    found = re.search(r"fairness city_tier equalized_odds_difference <= maximum: (0\.\d+) fails "
                      r"0\.050 \((?:true|false) positive rate (\w+) 0\.\d\d vs (\w+) 0\.\d\d\)", message)  # fmt: skip
    assert found, message
    assert float(found[1]) > 0.05 and found[2] == "rural"  # rural customers: flagged most
    assert champion(stack).version == before.version
    client = MlflowClient(stack["mlflow"].url)
    rejected = client.get_model_version(
        "churn", client.get_registered_model("churn").aliases["challenger"]
    )
    assert "| **failed** | fairness city_tier equalized_odds_difference <= maximum" in model_card(
        client, rejected
    )


def model_card(client: MlflowClient, version) -> str:
    """The card a version links to (its tag `model_card`, named in its description)."""
    link = version.tags["model_card"]
    assert link == f"runs:/{version.run_id}/model_card.md" and link in version.description
    return mlflow.artifacts.load_text(link)


def _null_column(frame):
    frame.loc[frame.index[:40], "avg_delivery_minutes"] = None
    return frame


def _renamed_column(frame):
    return frame.rename(columns={"orders_30d": "orders_last_30d"})


def land_broken(landing: Path, day: int, breakage) -> Path:
    """A batch for `day` (after everything landed so far) broken by `breakage`."""
    features, _ = generate_day(SMALL, day)
    path = batch_path(features_dir(landing), SMALL.day_date(day))
    breakage(features).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    ("breakage", "column", "rule", "day"),
    [(_null_column, "avg_delivery_minutes", "not_null", 30),
     (_renamed_column, "orders_30d", "missing_column", 31)],
)  # fmt: skip
def test_a_batch_that_breaks_the_contract_stops_the_run_before_training(
    stack, first_champion, breakage, column, rule, day
):
    before = champion(stack)
    versions_before = len(MlflowClient(stack["mlflow"].url).search_model_versions("name='churn'"))
    bad = land_broken(stack["landing"], day, breakage)

    state = training_pipeline(reason="new-data", return_state=True)

    assert state.is_failed()
    assert f"{column}: {rule}" in flow_message(state), flow_message(state)
    assert champion(stack).version == before.version
    client = MlflowClient(stack["mlflow"].url)
    assert len(client.search_model_versions("name='churn'")) == versions_before  # no training
    run = mlflow_run_of(stack, state)
    assert run.info.status == "FAILED"
    assert run.data.tags["stopped_at"] == "validate_data"
    assert f"{column}: {rule}" in run.data.tags["stop_reason"]

    # Nothing is lost: the batch waits in quarantine with its reason, out of the next run's way.
    assert not bad.exists()
    kept = Path(stack["landing"]) / QUARANTINE / "features" / bad.name
    assert kept.exists() and column in kept.with_suffix(".reason.json").read_text()

    # Prefect 3 reports task runs as events: the server records them a moment after the flow
    # run has ended, so wait until the last task (`record`) has arrived.
    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))

    def task_states() -> dict[str, str] | None:
        with get_client(sync_client=True) as prefect_api:
            runs = prefect_api.read_task_runs(
                flow_run_filter=flow_run, sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50
            )
        found = {r.name.rsplit("-", 1)[0]: r.state.type.value for r in runs if r.state}
        return found if found.get("record") == "COMPLETED" and "validate_data" in found else None

    tasks = wait_for(task_states, timeout=30, what="the flow run's task runs in Prefect")
    assert tasks["validate_data"] == "FAILED"
    assert "train_candidate" not in tasks  # stopped before training


def test_the_run_after_a_quarantined_batch_proceeds(stack, first_champion):
    land_broken(stack["landing"], 40, _null_column)
    assert training_pipeline(reason="test", return_state=True).is_failed()
    state = training_pipeline(reason="test", return_state=True)
    assert state.is_completed(), flow_message(state)


def land_labelled_day(landing: Path, day: int) -> None:
    """Day `day`'s features and, as if `label_delay_days` had passed, its labels."""
    land_day(landing, SMALL, day)
    land_day(landing, SMALL, day + SMALL.label_delay_days)


def _unreadable(path: Path, kind: str) -> None:
    """`path`, a landed Parquet file, made unreadable as a bad export would leave it."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_text("customer_id,age\nc-1,30\n")  # not Parquet at all


def land_unreadable(landing: Path, day: int, kind: str, folder: str) -> Path:
    """Day `day` lands with its `folder` file ("features" or "labels") unreadable."""
    features, labels = generate_day(SMALL, day)
    path = batch_path(features_dir(landing), SMALL.day_date(day))
    features.to_parquet(path, index=False)
    if folder == "labels":
        path = batch_path(landing / "labels", SMALL.day_date(day))
        labels.to_parquet(path, index=False)
    _unreadable(path, kind)
    return path


def assert_stopped_and_quarantined(stack, state, bad: Path, before: registry.ModelRef, versions):
    """The run stopped at the contract with the file's name and reason, the file waits in
    quarantine with a reason file, and the champion did not move."""
    reason = f"*: readable: {bad.parent.name}/{bad.name} cannot be read"
    assert state.is_failed()
    assert reason in flow_message(state), flow_message(state)
    run = mlflow_run_of(stack, state)
    assert run.info.status == "FAILED"
    assert run.data.tags["stopped_at"] == "validate_data"
    assert reason in run.data.tags["stop_reason"]
    assert champion(stack).version == before.version
    client = MlflowClient(stack["mlflow"].url)
    assert len(client.search_model_versions("name='churn'")) == versions  # no training
    assert not bad.exists()
    kept = Path(stack["landing"]) / QUARANTINE / bad.parent.name / bad.name
    assert kept.exists()
    recorded = json.loads(kept.with_suffix(".reason.json").read_text())
    assert [v["rule"] for v in recorded["violations"]["violations"]] == ["readable"]


@pytest.mark.parametrize(
    ("kind", "folder", "day"),
    [("truncated", "features", 50), ("not parquet", "features", 51), ("empty", "labels", 52)],
)
def test_a_file_that_cannot_be_read_stops_the_run_and_is_quarantined(
    stack, first_champion, kind, folder, day
):
    before = champion(stack)
    versions = len(MlflowClient(stack["mlflow"].url).search_model_versions("name='churn'"))
    bad = land_unreadable(stack["landing"], day, kind, folder)
    state = training_pipeline(reason="new-data", return_state=True)
    assert_stopped_and_quarantined(stack, state, bad, before, versions)


def test_the_run_after_an_empty_file_was_quarantined_trains_without_it(stack, first_champion):
    before = champion(stack)
    versions = len(MlflowClient(stack["mlflow"].url).search_model_versions("name='churn'"))
    bad = land_unreadable(stack["landing"], 60, "empty", "features")
    stopped = training_pipeline(reason="new-data", return_state=True)
    assert_stopped_and_quarantined(stack, stopped, bad, before, versions)
    land_labelled_day(stack["landing"], 61)  # new data: not a twin of the champion

    state = training_pipeline(reason="new-data", return_state=True)

    assert state.is_completed(), flow_message(state)
    run = mlflow_run_of(stack, state)
    assert run.info.status == "FINISHED" and "stopped_at" not in run.data.tags
    registered = run.data.tags["registered_version"]
    assert int(registered) == versions + 1  # it trained and registered a candidate
    assert (champion(stack).version == registered) == (run.data.tags["gate"] == "passed")


def assert_stopped_by_name(stack, state, bad: Path, kept_as: str, before, versions) -> None:
    """The run stopped at the contract naming the file and rule `file_name`; the file waits
    in quarantine as `kept_as` with its own reason; the champion did not move."""
    reason = f"*: file_name: {bad.parent.name}/{bad.name}: name is not YYYY-MM-DD.parquet"
    assert state.is_failed()
    assert reason in flow_message(state), flow_message(state)
    run = mlflow_run_of(stack, state)
    assert run.info.status == "FAILED" and run.data.tags["stopped_at"] == "validate_data"
    assert reason in run.data.tags["stop_reason"]
    assert champion(stack).version == before.version
    client = MlflowClient(stack["mlflow"].url)
    assert len(client.search_model_versions("name='churn'")) == versions  # no training
    assert not bad.exists()
    kept = Path(stack["landing"]) / QUARANTINE / bad.parent.name / kept_as
    recorded = json.loads(kept.with_suffix(".reason.json").read_text())
    assert recorded["file"] == str(bad) and recorded["quarantined_as"] == kept_as
    assert "file_name" in {v["rule"] for v in recorded["violations"]["violations"]}


def test_a_misnamed_parquet_file_is_quarantined_with_its_reason_and_the_next_run_proceeds(
    stack, first_champion
):
    landing = Path(stack["landing"])
    before = champion(stack)
    versions = len(MlflowClient(stack["mlflow"].url).search_model_versions("name='churn'"))
    newest = feature_files(landing)[-1]
    # Strays that are not batches: never listed, never moved, never a reason to stop.
    strays = [features_dir(landing) / "notes.txt", features_dir(landing) / ".DS_Store",
              labels_dir(landing) / ".DS_Store"]  # fmt: skip
    for stray in strays:
        stray.write_text("not a batch")
    # A good batch under a name that is not a day, in each folder.
    misnamed = features_dir(landing) / "export-final.parquet"
    shutil.copy(newest, misnamed)
    misnamed_labels = labels_dir(landing) / f"{newest.stem} (1).parquet"
    shutil.copy(newest, misnamed_labels)

    # The watcher is not thrown off either: it still announces the next batch named by its day.
    assert watch_landing(return_state=True).is_completed()
    land_day(landing, SMALL, 70)
    watched = watch_landing(return_state=True)
    assert watched.is_completed()
    assert f"{SMALL.day_date(70).isoformat()}.parquet" in (watched.message or ""), watched.message

    stopped = training_pipeline(reason="new-data", return_state=True)
    assert_stopped_by_name(stack, stopped, misnamed, misnamed.name, before, versions)
    assert_stopped_by_name(stack, stopped, misnamed_labels, misnamed_labels.name, before, versions)
    first_copy = (landing / QUARANTINE / "features" / misnamed.name).read_bytes()
    assert first_copy == newest.read_bytes()  # the file itself, whole

    # A second bad export of the same name: quarantined beside the first, which stays.
    misnamed.write_bytes(b"")
    again = training_pipeline(reason="new-data", return_state=True)
    assert_stopped_by_name(stack, again, misnamed, "export-final.1.parquet", before, versions)
    assert (landing / QUARANTINE / "features" / misnamed.name).read_bytes() == first_copy
    assert (landing / QUARANTINE / "features" / "export-final.1.parquet").read_bytes() == b""
    land_labelled_day(landing, 72)  # new data: not a twin of the champion

    state = training_pipeline(reason="new-data", return_state=True)

    assert state.is_completed(), flow_message(state)
    run = mlflow_run_of(stack, state)
    assert run.info.status == "FINISHED" and "stopped_at" not in run.data.tags
    assert int(run.data.tags["registered_version"]) == versions + 1  # it trained
    assert all(stray.exists() for stray in strays)  # left where they were


def test_training_twice_on_the_same_data_keeps_the_champion_and_registers_no_twin(
    stack, first_champion
):
    """`make level1-train` twice, nothing new landed: the second run is the champion's own
    recipe (same data, code and params), so the gate rejects it, says which version it
    copies, and the registry gets no twin; the champion, and so every service, stays.

    The first run must leave its recipe as the champion whatever the earlier tests left
    (a champion on other data may be better than it): it runs with bars any model clears."""
    client = MlflowClient(stack["mlflow"].url)
    with pytest.MonkeyPatch.context() as lenient:
        lenient.setenv("L1_CHAMPION_MARGIN", "-1")
        lenient.setenv("L1_MAX_SLICE_DROP", "1")
        lenient.setenv("L1_MAX_FAIRNESS_WORSENING", "1")
        get_settings.cache_clear()
        first = training_pipeline(reason="manual", return_state=True)
    get_settings.cache_clear()
    assert first.is_completed(), flow_message(first)
    before = champion(stack)
    assert first.result()["version"] in (before.version, None)  # promoted, or a twin already
    versions = len(client.search_model_versions("name='churn'"))

    state = training_pipeline(reason="manual", return_state=True)

    reason = f"same data, code and params as champion version {before.version}"
    assert state.is_completed(), "a rejection is an answer, not a failure"
    assert "rejected by the gate" in flow_message(state) and reason in flow_message(state)
    assert state.result()["twin_of"] == before.version and state.result()["version"] is None
    assert champion(stack) == before
    assert len(client.search_model_versions("name='churn'")) == versions  # no twin
    run = mlflow_run_of(stack, state)
    assert run.info.status == "FINISHED"
    assert run.data.tags["gate"] == "rejected" and reason in run.data.tags["gate_summary"]
    assert run.data.tags["twin_of"] == before.version
    assert run.data.tags["lineage"] == before.lineage != ""  # the reason is true


def test_a_service_without_a_champion_says_so(stack, tmp_path):
    settings = ServiceSettings(
        mlflow_tracking_uri=stack["mlflow"].url,
        model_name="no-such-model",
        prediction_store_url=f"sqlite:///{tmp_path / 'p.db'}",
    )
    with TestClient(create_app(settings)) as service:
        health = service.get("/health").json()
        assert health["status"] == "no_model" and "no-such-model" in health["detail"]
        assert service.post("/predict", json=example_record()).status_code == 503
