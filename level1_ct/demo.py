"""`make demo`, level 1: the continuous-training loop in the embedded mode, no Docker.

Real servers as local processes: MLflow on SQLite, a Prefect server on SQLite, the runner
serving level 1's deployments, and the service following `models:/churn@champion`; where
Debian's Prometheus and Alertmanager are installed, also the pipeline's exporter, the alert
inbox, Alertmanager and Prometheus with level 1's rules (otherwise it says what it skipped).
The story: a first model exists (trained on demand from the first few days); a new batch
lands; nobody does anything; the watcher sees it, the training deployment runs, the gate
passes the new model, the champion moves, and the service answers with the new version.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from mlflow import MlflowClient
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.variables import Variable
from pydantic_settings import BaseSettings, SettingsConfigDict

from level1_ct.flows.landing import LAST_SEEN
from level1_ct.run import DEPLOYMENTS
from level1_ct.service import served_version
from shared import prometheus
from shared.data import feature_files
from shared.schema import MODEL_NAME, example_record
from shared.servers import (
    LOOPBACK,
    MlflowServer,
    PrefectServer,
    ServerError,
    free_port,
    mlflow_server,
    prefect_server,
    require_free,
    running,
)
from shared.simulator import SimulationConfig, land_day, simulate
from shared.waiting import wait_until


class DemoSettings(BaseSettings):
    """Settings of the level-1 demo, from DEMO_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", frozen=True)

    var: Path = Path("var")  # the demo writes under <var>/level1
    seed: int = 42
    n_iter: int = 5
    mlflow_port: int = 5000
    prefect_port: int = 4200
    level1_service_port: int = 8001
    # Observability, where Prometheus and Alertmanager are installed (the stacks' ports)
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    inbox_port: int = 8004
    metrics_port: int = 9108


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def wait_for_version(url: str, other_than: str | None, timeout: float) -> str:
    """Poll the service's /model until it serves a version other than `other_than`."""

    def new_version() -> str | None:
        version = served_version(url)
        return version if version not in (None, other_than) else None

    return wait_until(
        new_version, timeout, f"the service at {url} serving a version after {other_than}"
    )


def predict(url: str) -> None:
    answer = httpx.post(f"{url}/predict", json={**example_record(), "customer_id": "demo-1"})
    body = answer.json()
    print(f"POST /predict -> {answer.status_code}: model {body['model_name']} version "
          f"{body['model_version']}, churn probability {body['predictions'][0]['churn_probability']}")  # fmt: skip


def embedded_env(
    settings: DemoSettings,
    root: Path,
    mlflow: MlflowServer,
    prefect: PrefectServer,
    runner_port: int,
) -> dict[str, str]:
    """The environment of the runner and the service: the servers' URLs, the pipeline's
    settings, and 127.0.0.1 as every bind address (`running` adds Prefect's)."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow.url,
        "PREFECT_API_URL": prefect.api_url,
        "PREDICTION_STORE_URL": f"sqlite:///{(root / 'predictions.db').resolve()}",
        "L1_LANDING": str(root / "landing"),
        "L1_EVIDENTLY_WORKSPACE": str(root / "evidently"),
        "L1_N_ITER": str(settings.n_iter),
        "L1_SEED": str(settings.seed),
        "L1_WATCH_INTERVAL_SECONDS": "5",
        "L1_SERVE_HOST": LOOPBACK,
        "L1_SERVE_PORT": str(settings.level1_service_port),
        "L1_SERVE_POLL_SECONDS": "2",
        "PREFECT_RUNNER_SERVER_ENABLE": "true",
        "PREFECT_RUNNER_SERVER_PORT": str(runner_port),
        "L1_METRICS_HOST": LOOPBACK,
        "L1_METRICS_PORT": str(settings.metrics_port),
        "ALERTS_HOST": LOOPBACK,
        "ALERTS_PORT": str(settings.inbox_port),
        "ALERTS_DB": f"sqlite:///{(root / 'alerts.db').resolve()}",
    }


@dataclass(frozen=True)
class Observed:
    """A level's side of Prometheus, as its stack has it: the label its Prometheus puts on
    every alert, its exporter and alert inbox (modules run with `python -m`), its rules."""

    level: str = "1"
    service_job: str = "serving"  # the prediction service's scrape job
    exporter: str = "level1_ct.pipeline_metrics"
    inbox: str = "level1_ct.alerts"
    rules: tuple[Path, ...] = (Path(__file__).parent / "prometheus" / "rules.yml",)


def observed_ports(settings, absent: list[str]) -> dict[int, str]:
    """The ports `observed` takes (none when the binaries are `absent`)."""
    if absent:
        return {}
    return {settings.prometheus_port: "Prometheus", settings.alertmanager_port: "Alertmanager",
            settings.inbox_port: "the alert inbox", settings.metrics_port: "the pipeline exporter"}  # fmt: skip


@contextmanager
def observed(settings: DemoSettings, root: Path, env: dict[str, str], service_url: str,
             absent: list[str], level: Observed = Observed()
             ) -> Iterator[prometheus.PrometheusServer | None]:  # fmt: skip
    """The stack's observability as local processes: the pipeline's exporter, the alert
    inbox, Alertmanager and Prometheus with the level's rules (level 1's by default: drift
    then reaches a retrain through them, L1_ALERT_ROUTE). None, with what was skipped said,
    where the binaries are not installed (`absent`: prometheus.missing()): the demo runs on
    without (at level 1 with Prefect's drift event). `settings` has the four ports."""
    if absent:
        print(f"skipped Prometheus and Alertmanager: {', '.join(absent)} not installed "
              f"({prometheus.INSTALL}); the service's metrics are at {service_url}/metrics")  # fmt: skip
        yield None
        return
    inbox = f"http://{LOOPBACK}:{settings.inbox_port}"
    exporter = f"{LOOPBACK}:{settings.metrics_port}"
    alertmanager = prometheus.AlertmanagerServer(
        root / "alertmanager", f"{inbox}/alertmanager", settings.alertmanager_port
    )
    server = prometheus.PrometheusServer(
        root / "prometheus",
        targets={
            level.service_job: service_url.removeprefix("http://"),
            "pipeline": exporter,
            "alerts": inbox.removeprefix("http://"),
        },  # fmt: skip
        rule_files=level.rules,
        alertmanager=alertmanager.url,
        port=settings.prometheus_port,
        labels=(("level", level.level),),  # as the stack's: Alertmanager routes some by level
    )
    with ExitStack() as stack:
        stack.enter_context(running([sys.executable, "-m", level.exporter],
                                    f"http://{exporter}/metrics", root / "exporter.log", env=env))  # fmt: skip
        stack.enter_context(running([sys.executable, "-m", level.inbox], f"{inbox}/health",
                                    root / "inbox.log", env=env))  # fmt: skip
        stack.enter_context(prometheus.alertmanager_server(alertmanager, root / "alertmanager.log"))
        stack.enter_context(prometheus.prometheus_server(server, root / "prometheus.log"))
        print(f"Prometheus {server.url}/classic/alerts   alert inbox {inbox}   "
              f"Alertmanager {alertmanager.url}/api/v2/alerts")  # fmt: skip
        yield server


@contextmanager
def started(
    settings: DemoSettings, root: Path, absent: list[str]
) -> Iterator[tuple[MlflowServer, str, prometheus.PrometheusServer | None]]:
    """Level 1 in the embedded mode for the block: MLflow, Prefect, the runner serving the
    deployments, the service, and Prometheus' side unless binaries are `absent`. Yields MLflow, the
    service's URL and Prometheus (None when skipped) once all are healthy."""
    url = f"http://{LOOPBACK}:{settings.level1_service_port}"
    mlflow = MlflowServer(root=root / "mlflow", port=settings.mlflow_port)
    prefect = PrefectServer(home=root / "prefect", port=settings.prefect_port)
    step("2. Start MLflow and Prefect on SQLite (about 30 s)")
    with (
        mlflow_server(mlflow),
        prefect_server(prefect),
        temporary_settings(updates={PREFECT_API_URL: prefect.api_url}),
    ):
        print(f"MLflow {mlflow.url}   Prefect {prefect.api_url.removesuffix('/api')}")
        runner_port = free_port()
        env = embedded_env(settings, root, mlflow, prefect, runner_port)
        if not absent:  # Alertmanager starts the retrains: one path for drift
            env["L1_ALERT_ROUTE"] = "alertmanager"
        # What has landed so far is the past: the watcher announces only batches after it.
        Variable.set(LAST_SEEN, feature_files(root / "landing")[-1].name, overwrite=True)

        step("3. Start the runner (serves the deployments) and the service (follows the champion)")
        runner = [sys.executable, "-m", "level1_ct.flows.deployments", "all"]
        service = [sys.executable, "-m", "level1_ct.service"]
        runner_health = f"http://{LOOPBACK}:{runner_port}/health"
        with (
            running(runner, runner_health, root / "runner.log", env=env),
            running(service, f"{url}/health", root / "service.log", env=env, timeout=60),
        ):
            print(
                f"runner log {root / 'runner.log'}; service {url}/docs: {httpx.get(f'{url}/health').json()}"
            )
            with observed(settings, root, env, url, absent) as server:
                yield mlflow, url, server


def show_observability(server: prometheus.PrometheusServer | None, version: str) -> None:
    """What Prometheus sees: its targets, the rules it evaluates, the champion (once the
    exporter's next scrape has the new `version`), the answers the service counted."""
    if server is None:
        print(f"skipped: Prometheus is not installed ({prometheus.INSTALL})")
        return
    up = {job: "up" if ok else "DOWN" for job, ok in server.wait_for_targets().items()}
    print(f"targets: {', '.join(f'{job} {state}' for job, state in sorted(up.items()))}")
    champion = wait_until(
        lambda: [r for r in server.query("churn_champion_info") if r["metric"]["version"] == version],
        30, f"Prometheus to see version {version} as champion",
    )  # fmt: skip
    print(f"churn_champion_info: version {champion[0]['metric']['version']}, "
          f"trained on {champion[0]['metric']['window']}")  # fmt: skip
    answered = server.query('sum(churn_http_requests_total{route="/predict"})')
    print(
        f"POST /predict requests counted at Prometheus' last scrape: {answered[0]['value'][1] if answered else 0}"
    )
    rules = server.rules()
    firing = sorted({r["name"] for r in rules if r.get("state") == "firing"})
    print(f"alert rules loaded: {len(rules)}; firing: {', '.join(firing) or 'none'}")


def demo(settings: DemoSettings) -> dict[str, float]:
    """Run the demo; returns its timings (the lead time the benchmark reports)."""
    root = settings.var / "level1"
    landing = root / "landing"
    began = time.monotonic()
    ports = {settings.mlflow_port: "MLflow", settings.prefect_port: "Prefect",
             settings.level1_service_port: "the level-1 service"}  # fmt: skip
    absent = prometheus.missing()  # Prometheus' side runs where Debian's packages are installed
    require_free(ports | observed_ports(settings, absent))

    shutil.rmtree(root, ignore_errors=True)  # a new world each time: no champion yet
    config = SimulationConfig(scenario="covariate-shift", days=10, seed=settings.seed)
    step(
        f"1. Data: {config.days} days of customers land (labels {config.label_delay_days} days late)"
    )
    simulate(landing, config, replace=True)
    print(f"landed in {landing}")

    with started(settings, root, absent) as (mlflow, url, server):
        step("4. On demand (make level1-train): a first model from only 3 labelled days")
        run = run_deployment(
            DEPLOYMENTS["train"], parameters={"reason": "manual", "window_days": 3}
        )
        print(f"{run.name}: {run.state.name}: {run.state.message}")
        first = wait_for_version(url, None, 60)
        predict(url)

        step("5. A new batch lands. Nobody does anything: watch the loop")
        written = land_day(landing, config, config.days)
        landed_at = time.monotonic()
        print(f"landed {[p.name for p in written]}; the watcher looks every 5 s ...", flush=True)
        second = wait_for_version(url, first, 300)
        lead_time = time.monotonic() - landed_at
        tags = MlflowClient(mlflow.url).get_model_version(MODEL_NAME, second).tags
        trigger = (
            MlflowClient(mlflow.url)
            .get_run(httpx.get(f"{url}/model").json()["run_id"])
            .data.tags["trigger"]
        )
        print(f"trigger: {trigger}; gate: {tags['gate']}; trained on {tags['window']}")
        print(f"the champion moved: version {first} -> {second}, {lead_time:.0f} s after the "
              "batch landed; the service follows:")  # fmt: skip
        predict(url)
        print("  " + httpx.get(f"{url}/model").text)

        step("6. What Prometheus sees (the stacks' alert rules, on the embedded servers)")
        show_observability(server, second)

    step(f"Done in {time.monotonic() - began:.0f} s. Where to look next:")
    print("  the whole loop, in containers:  make up LEVEL=1, then make level1-replay STACK=docker")
    print("  or locally: make mlflow, make prefect, make level1-runner, make level1-serve, then")
    print("              make level1-replay (drift arrives; monitoring triggers retraining)")
    print(f"  files: {root}   the guide: level1_ct/README.md")
    return {"lead_time_s": lead_time, "total_s": time.monotonic() - began}


def main() -> None:
    try:
        demo(DemoSettings())
    except (ServerError, RuntimeError) as failure:
        sys.exit(f"\ndemo failed: {failure}")


if __name__ == "__main__":
    main()
