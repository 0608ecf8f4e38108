"""Every web UI the guides point to, opened in headless Chromium as a learner opens it: each
service's API docs (/docs, /redoc), the MLflow UI, the Prefect UI and the Evidently UI, each
served by a real local server with something in it. Each test reads the page after its
scripts ran and looks for that content, not for a page shell: a single-page app that cannot
read its data (Swagger UI 4 given OpenAPI 3.1, a Prefect UI pointed at the wrong API) still
answers 200 and loads every asset."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from level1_ct import reports
from level1_ct.settings import PipelineSettings
from shared.schema import LABEL
from shared.servers import (
    MlflowServer,
    PrefectServer,
    free_port,
    mlflow_server,
    prefect_server,
    running,
)
from tests.browser import render
from tests.integration.level1 import service_process, wait_for


@dataclass(frozen=True)
class Service:
    level: str
    module: str
    prefix: str
    operations: frozenset[tuple[str, str]]  # (method, path) that the docs must show

    def __str__(self) -> str:
        return f"level {self.level}"


PREDICTION_ROUTES = {("post", "/predict"), ("get", "/health"), ("get", "/model")}
EXPLAINED = PREDICTION_ROUTES | {("post", "/explain")}  # levels 1 and 2 (shared/explain.py)
SERVICES = [
    Service("0", "level0_manual.service", "L0_SERVE_", frozenset(PREDICTION_ROUTES)),
    Service("1", "level1_ct.service", "L1_SERVE_", frozenset(EXPLAINED)),
    Service(
        "2",
        "level2_cicd.service",
        "L2_SERVE_",
        frozenset(EXPLAINED | {("get", "/rollout"), ("post", "/admin/fault")}),
    ),
]


@pytest.fixture(scope="module", params=SERVICES, ids=str)
def service(request, tmp_path_factory) -> Iterator[tuple[Service, str]]:
    """One level's service as a real process, one level at a time, with no model: the docs
    render without one. Levels 1 and 2 are pointed at an MLflow that is not there (they
    start anyway and say so in /health)."""
    spec: Service = request.param
    tmp = tmp_path_factory.mktemp(f"service{spec.level}")
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = {"model_dir": str(tmp / "no-model")} if spec.level == "0" else {}
    with service_process(spec.module, spec.prefix, tmp, nowhere, settings) as url:
        yield spec, url


def swagger_operations(dom: str) -> set[tuple[str, str]]:
    """(method, path) of each operation block Swagger UI rendered."""
    blocks = dom.split('class="opblock opblock-')[1:]
    return {
        (block.split('"')[0].split()[0], re.search(r'data-path="([^"]+)"', block).group(1))
        for block in blocks
    }


def test_swagger_ui_shows_every_operation_and_the_request_schema(service):
    spec, url = service
    dom = render(f"{url}/docs")
    # What Swagger UI shows when it cannot read the document (4.x given OpenAPI 3.1).
    assert "Unable to render this definition" not in dom
    assert "errors-wrapper" not in dom
    assert f"Churn prediction service (level {spec.level}" in dom
    assert swagger_operations(dom) == spec.operations, dom[-3000:]
    assert '<span class="opblock-summary-path" data-path="/predict">' in dom
    assert 'json-schema-2020-12__title">CustomerFeatures<' in dom  # the request's fields


def test_redoc_shows_every_operation(service):
    spec, url = service
    dom = render(f"{url}/redoc")
    assert "Something went wrong" not in dom  # ReDoc's error page
    shown = set(re.findall(r'http-verb (\w+)">\1</span><span[^>]*>([^<]+)</span>', dom))
    assert shown == spec.operations, dom[-3000:]
    assert "CustomerFeatures" in dom
    assert "Churn probability for one customer record" in dom  # /predict's description


# ---- The tools' UIs: MLflow, Prefect, Evidently ---------------------------------------------


@contextmanager
def evidently_ui_server(workspace: Path) -> Iterator[str]:
    """The Evidently UI on a workspace folder as the level-1 guide starts it
    (`python -m level1_ct.evidently_ui`); yields its URL."""
    workspace.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "level1_ct.evidently_ui", "--workspace", str(workspace),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {**os.environ, "DO_NOT_TRACK": "1"}  # no telemetry calls
    with running(command, f"{url}/api/projects", workspace.parent / "evidently.log", env=env):
        yield url


@dataclass(frozen=True)
class Tools:
    mlflow: MlflowServer
    prefect: PrefectServer
    evidently: str  # the Evidently UI's URL
    workspace: Path  # the folder it shows


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Iterator[Tools]:
    """MLflow, Prefect and the Evidently UI on free ports, started side by side: each takes
    10-30 s to come up, mostly importing."""
    tmp = tmp_path_factory.mktemp("tools")
    servers = [
        mlflow_server(MlflowServer(root=tmp / "mlflow", port=free_port())),
        prefect_server(PrefectServer(home=tmp / "prefect", port=free_port())),
        evidently_ui_server(tmp / "evidently"),
    ]
    with ExitStack() as stack, ThreadPoolExecutor(len(servers)) as pool:
        started = [pool.submit(stack.enter_context, server) for server in servers]
        yield Tools(*(future.result() for future in started), workspace=tmp / "evidently")


@dataclass(frozen=True)
class Tracked:
    url: str
    experiment_id: str
    run_id: str


@pytest.fixture(scope="module")
def mlflow_ui(tools) -> Tracked:
    """An experiment, a finished run with a metric, and a registered model version with the
    champion alias, as level 1's pipeline leaves them."""
    client = MlflowClient(tools.mlflow.url)
    experiment = client.create_experiment("ui-check experiment")
    run = client.create_run(experiment, run_name="ui-check run")
    client.log_metric(run.info.run_id, "roc_auc", 0.8123)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("ui-check-churn")
    version = client.create_model_version(
        "ui-check-churn", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("ui-check-churn", "champion", version.version)
    return Tracked(tools.mlflow.url, experiment, run.info.run_id)


def test_mlflow_ui_lists_the_experiment(mlflow_ui):
    dom = render(f"{mlflow_ui.url}/", budget_ms=15000)
    assert "Recent Experiments" in dom
    assert "ui-check experiment" in dom


def test_mlflow_ui_shows_a_run_with_its_metric_and_registered_model(mlflow_ui):
    run = f"{mlflow_ui.url}/#/experiments/{mlflow_ui.experiment_id}/runs/{mlflow_ui.run_id}"
    dom = render(run, budget_ms=15000)
    assert "ui-check run" in dom and "ui-check experiment" in dom
    assert "roc_auc" in dom and "0.8123" in dom
    assert "ui-check-churn" in dom  # the version registered from this run


def test_mlflow_ui_shows_the_registered_model_and_its_alias(mlflow_ui):
    dom = render(f"{mlflow_ui.url}/#/models/ui-check-churn", budget_ms=15000)
    assert "ui-check-churn" in dom
    assert "champion" in dom
    assert "Version 1" in dom


@pytest.fixture(scope="module")
def prefect_ui(tools) -> PrefectServer:
    """The embedded Prefect server (on a port that is not 4200) with a flow and a completed
    flow run, created through the REST API: cheaper than running a flow."""
    api = tools.prefect.api_url
    flow = httpx.post(f"{api}/flows/", json={"name": "ui-check-flow"})
    flow.raise_for_status()
    state = {"type": "COMPLETED", "name": "Completed"}
    run = httpx.post(
        f"{api}/flow_runs/",
        json={"flow_id": flow.json()["id"], "name": "ui-check-flow-run", "state": state},
    )
    run.raise_for_status()
    return tools.prefect


def prefect_page(server: PrefectServer, path: str) -> str:
    dom = render(server.api_url.removesuffix("/api") + path, budget_ms=15000)
    # What the UI shows when it looks for its API elsewhere (PREFECT_UI_API_URL unset).
    assert "Can't connect to Server API" not in dom
    return dom


def test_prefect_ui_lists_the_flow_and_its_last_run(prefect_ui):
    dom = prefect_page(prefect_ui, "/flows")
    assert "ui-check-flow" in dom
    assert 'class="p-link">ui-check-flow-run<' in dom  # the "Last run" column


def test_prefect_ui_dashboard_counts_the_run(prefect_ui):
    dom = prefect_page(prefect_ui, "/dashboard")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "Flow Runs 1 total" in text, text[-1500:]


@dataclass(frozen=True)
class Published:
    url: str
    project_id: str
    report_id: str
    drifted: str  # the report's count of drifted columns, "<n> out of <columns>"


@pytest.fixture(scope="module")
def evidently_ui(tools, labelled) -> Published:
    """A drift report published to the workspace folder as level 1's monitoring does
    (reports.publish) while the Evidently UI runs on it, as in the embedded mode."""
    project = PipelineSettings().evidently_project
    half = len(labelled) // 2
    tags = ["version=7", "date=2026-01-05", "kind=monitoring"]
    drift = reports.data_drift(labelled.iloc[half:], labelled.iloc[:half], tags=tags)
    reports.publish(tools.workspace, project, [drift.snapshot])
    api = f"{tools.evidently}/api/projects"
    # The UI watches the folder and reloads a project once its files settle
    found = wait_for(lambda: next(iter(httpx.get(api).json()), None), 30, "the UI to list it")
    (snapshot,) = wait_for(
        lambda: httpx.get(f"{api}/{found['id']}/snapshots").json(), 30, "the UI to read it"
    )
    # A second check, with live quality: published again, the dashboard is saved again
    quality = labelled.assign(**{reports.TARGET: labelled[LABEL].astype(int)})
    quality[reports.PROBABILITY] = (0.3 + 0.4 * quality[reports.TARGET]).clip(0, 1)
    later = reports.data_drift(labelled.iloc[:half], labelled.iloc[half:], tags=tags)
    scored = reports.live_quality(quality, tags)
    reports.publish(tools.workspace, project, [later.snapshot, scored.snapshot])
    drifted = f"{len(drift.drifted)} out of {len(reports.FEATURE_NAMES)}"
    return Published(tools.evidently, found["id"], snapshot["id"], drifted)


def test_a_half_written_project_file_does_not_stop_the_ui_following_the_folder(tmp_path, labelled):
    """Evidently's watcher reads a project's metadata.json when it appears: caught still
    empty (a busy machine), `evidently ui` stopped following the folder for good; level 1's
    UI (level1_ct/evidently_ui.py) reads it once written, and every project after it."""
    from evidently.ui.workspace import Workspace

    scratch = Workspace(str(tmp_path / "scratch")).create_project("first")  # its metadata
    written = (tmp_path / "scratch" / str(scratch.id) / "metadata.json").read_text()
    workspace = tmp_path / "evidently"
    with evidently_ui_server(workspace) as url:
        metadata = workspace / str(scratch.id) / "metadata.json"
        metadata.parent.mkdir()
        metadata.touch()  # created, not yet written
        time.sleep(2)  # the watcher has read it empty
        metadata.write_text(written)
        later = Workspace(str(workspace)).create_project("later")
        listed = wait_for(
            lambda: (lambda names: names if len(names) == 2 else None)(
                sorted(p["name"] for p in httpx.get(f"{url}/api/projects").json())
            ), 30, "the UI to list both projects",
        )  # fmt: skip
        assert listed == ["first", "later"]
        rows = len(labelled) // 2
        drift = reports.data_drift(labelled.iloc[rows:], labelled.iloc[:rows])
        for project in (scratch, later):
            Workspace(str(workspace)).add_run(project.id, drift.snapshot, include_data=False)
            reports_of = f"{url}/api/projects/{project.id}/snapshots"
            wait_for(lambda at=reports_of: httpx.get(at).json(), 30, "the UI to list its report")


def test_evidently_ui_lists_level1s_project(evidently_ui):
    dom = render(f"{evidently_ui.url}/", budget_ms=10000)
    assert PipelineSettings().evidently_project in dom


def test_evidently_ui_lists_the_published_report_and_opens_it(evidently_ui):
    project = f"{evidently_ui.url}/projects/{evidently_ui.project_id}"
    listed = render(f"{project}/reports", budget_ms=10000)
    assert evidently_ui.report_id in listed
    shown = render(f"{project}/reports/{evidently_ui.report_id}", budget_ms=10000)
    assert "Dataset Drift" in shown
    summary = rf"Drift is detected for [\d.]+% of columns \({evidently_ui.drifted}\)"
    assert re.search(summary, shown), shown[-2000:]


def test_evidently_snapshots_carry_the_version_and_date_tags(evidently_ui):
    api = f"{evidently_ui.url}/api/projects/{evidently_ui.project_id}/snapshots"
    found = wait_for(lambda: (lambda s: s if len(s) == 3 else None)(httpx.get(api).json()), 30,
                     "the three snapshots")  # fmt: skip
    assert all({"version=7", "date=2026-01-05"} <= set(s["tags"]) for s in found), found


def test_evidently_dashboard_has_the_monitoring_panels_once(evidently_ui):
    """Published twice: the same six panels, not twelve."""
    board = httpx.get(f"{evidently_ui.url}/api/v2/dashboards/{evidently_ui.project_id}").json()
    assert [p["title"] for p in board["panels"]] == [title for title, *_ in reports.PANELS]
    assert len(board["tabs"]) == 1 and len(board["tabs"][0]["panels"]) == len(reports.PANELS)


def test_evidently_dashboard_shows_panels_with_data(evidently_ui):
    dom = render(f"{evidently_ui.url}/projects/{evidently_ui.project_id}", budget_ms=15000)
    assert "This dashboard is currently empty" not in dom
    for title, *_ in reports.PANELS:
        assert title in dom, title
    assert "MuiLineElement-root" in dom  # the line plots drew their series (MUI X charts)
