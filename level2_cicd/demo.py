"""`make demo`, level 2: a `git push` delivered to production in the embedded mode, no Docker.

Real servers as local processes: MLflow and Prefect on SQLite, the production service (the
champion, and a canary during a rollout) under steady live traffic, the CI/CD runner with
the pipeline's process worker, and a git remote whose hook calls Prefect. The story: level 1
left a champion; new days have landed; a developer pushes a change; nobody does anything
else. CI checks the commit (the images are reported skipped: no Docker here), CD deploys the
commit's pipeline to staging, its model passes the gate, the staging checks and a canary on
live traffic, and production answers with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic_settings import BaseSettings, SettingsConfigDict

from level1_ct.demo import (
    Observed,
    observed,
    observed_ports,
    predict,
    show_observability,
    step,
    wait_for_version,
)
from level2_cicd import remote
from level2_cicd.settings import CicdSettings
from level2_cicd.traffic import Traffic
from shared import prometheus
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

# Level 2's side of Prometheus, as its stack has it: level 1's rules and its own
LEVEL2 = Observed(
    level="2",
    service_job="production",
    exporter="level2_cicd.pipeline_metrics",
    inbox="level2_cicd.alerts",
    rules=(*Observed().rules, Path(__file__).parent / "prometheus" / "rules.yml"),
)


class DemoSettings(BaseSettings):
    """Settings of the level-2 demo, from DEMO_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", frozen=True)

    var: Path = Path("var")  # the demo writes under <var>/level2
    seed: int = 42
    n_iter: int = 5
    mlflow_port: int = 5000
    prefect_port: int = 4200
    level2_service_port: int = 8001
    rollout_window_seconds: float = 30.0
    # Observability, where Prometheus and Alertmanager are installed (the stacks' ports)
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    inbox_port: int = 8004
    metrics_port: int = 9108


def finished(name: str, timeout: float) -> object:
    """The flow run called `name` once it is final."""

    def final() -> object | None:
        with get_client(sync_client=True) as api:
            runs = api.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
        return runs[0] if runs and runs[0].state and runs[0].state.is_final() else None

    return wait_until(final, timeout, f"flow run {name} to finish", every=2)


def git(*args: str, cwd: Path) -> str:
    author = ["-c", "user.name=Learner", "-c", "user.email=learner@example.org"]
    result = subprocess.run(["git", *author, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr}")
    return result.stdout + result.stderr


def demo(settings: DemoSettings) -> dict[str, float]:
    """Run the demo; returns its timings (the lead time the benchmark reports)."""
    root = (settings.var / "level2").resolve()
    landing = root / "landing"
    url = f"http://{LOOPBACK}:{settings.level2_service_port}"
    started = time.monotonic()
    ports = {settings.mlflow_port: "MLflow", settings.prefect_port: "Prefect",
             settings.level2_service_port: "production"}  # fmt: skip
    absent = prometheus.missing()  # Prometheus' side runs where Debian's packages are installed
    require_free(ports | observed_ports(settings, absent))

    shutil.rmtree(root, ignore_errors=True)  # a new world each time
    config = SimulationConfig(scenario="stable", days=10, seed=settings.seed)
    step(f"1. Data: the first {config.days - 3} days of customers land")
    simulate(landing, SimulationConfig(scenario="stable", days=config.days - 3, seed=settings.seed))

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
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow.url,
            "PREFECT_API_URL": prefect.api_url,
            "PREDICTION_STORE_URL": f"sqlite:///{root / 'predictions.db'}",
            "L1_LANDING": str(landing),
            "L1_N_ITER": str(settings.n_iter),
            "L1_SEED": str(settings.seed),
            "L2_REMOTE": str(root / "remote.git"),
            "L2_WORKSPACE": str(root / "ci"),
            "L2_BUILD_IMAGES": "never",  # the embedded mode: no Docker
            "L2_PRODUCTION_URL": url,
            "L2_STAGING_PORT": str(free_port()),
            "L2_ROLLOUT_WINDOW_SECONDS": str(settings.rollout_window_seconds),
            "L2_ROLLOUT_CHECK_SECONDS": "3",
            "L2_SERVE_HOST": LOOPBACK,  # `running` adds Prefect's bind addresses
            "L2_SERVE_PORT": str(settings.level2_service_port),
            # Half of the demo's 20 requests a second: the canary's 100 within ~10 s
            "L2_SERVE_CANARY_SHARE": "0.5",
            "L2_SERVE_POLL_SECONDS": "1",
            "PREFECT_RUNNER_SERVER_ENABLE": "true",
            "PREFECT_RUNNER_SERVER_PORT": str(runner_port),
            "L1_METRICS_HOST": LOOPBACK,
            "L1_METRICS_PORT": str(settings.metrics_port),
            "ALERTS_HOST": LOOPBACK,
            "ALERTS_PORT": str(settings.inbox_port),
            "ALERTS_DB": f"sqlite:///{root / 'alerts.db'}",
        }
        if not absent:  # Alertmanager starts the retrains, as in the stack: one path for drift
            env["L1_ALERT_ROUTE"] = "alertmanager"

        step("3. Level 1 left a champion: its pipeline, run once")
        trained = subprocess.run(
            [sys.executable, "-m", "level1_ct.flows.training"], env=env,
            capture_output=True, text=True,
        )  # fmt: skip
        if trained.returncode:
            raise RuntimeError(f"the first training run failed:\n{trained.stderr[-2000:]}")
        for day in range(config.days - 3, config.days):
            land_day(landing, config, day)
        print(f"then days {config.days - 3}..{config.days - 1} landed")

        step("4. Start production (with live traffic) and the CI/CD runner with its worker")
        runner = [sys.executable, "-m", "level2_cicd.flows.deployments"]
        service = [sys.executable, "-m", "level2_cicd.service"]
        with (
            running(service, f"{url}/health", root / "service.log", env=env, timeout=60),
            running(
                runner,
                f"http://{LOOPBACK}:{runner_port}/health",
                root / "runner.log",
                env=env,
                timeout=120,
            ),  # fmt: skip
            Traffic(url, rate=20) as traffic,
            observed(settings, root, env, url, absent, LEVEL2) as server,
        ):
            first = wait_for_version(url, None, 30)
            predict(url)
            print(f"runner log {root / 'runner.log'}; production {url}/docs")

            step("5. A developer clones the remote, changes the code, and pushes")
            os.environ["PREFECT_API_URL"] = prefect.api_url  # the remote's hook calls it
            remote.create(CicdSettings(remote=env["L2_REMOTE"]))
            clone = root / "clone"
            git("clone", "-q", env["L2_REMOTE"], str(clone), cwd=root)
            gate = clone / "shared" / "gate.py"
            gate.write_text(gate.read_text().replace(
                "may a candidate replace the champion?", "may a candidate take over?", 1))  # fmt: skip
            git("commit", "-qam", "Gate: reviewed", cwd=clone)
            sha = git("rev-parse", "HEAD", cwd=clone).strip()
            pushed_at = time.monotonic()
            print(git("push", "-q", "origin", "main", cwd=clone).strip())

            step("6. Nobody does anything else: CI, then CD (Prefect UI: Runs)")
            ci = finished(f"ci-{sha[:12]}", 900)
            print(f"{ci.name}: {ci.state.name}: {ci.state.message}")
            if not ci.state.is_completed():
                raise RuntimeError("CI failed: see the ci artifact in the Prefect UI")
            cd = finished(f"cd-{sha[:12]}", 900)
            print(f"{cd.name}: {cd.state.name}: {cd.state.message}")
            if not cd.state.is_completed():
                raise RuntimeError("CD did not deliver: see the cd artifact in the Prefect UI")
            second = wait_for_version(url, first, 60)
            lead_time = time.monotonic() - pushed_at
            print(f"production moved: version {first} -> {second}, {lead_time:.0f} s after "
                  f"the push")  # fmt: skip
            predict(url)

            step("7. What Prometheus sees (the stack's alert rules, on the embedded servers)")
            show_observability(server, second)
        failed = [status for status, _ in traffic.answers if status != 200]
        print(f"live traffic: {len(traffic.answers)} requests, {len(failed)} failed")

    step(f"Done in {time.monotonic() - started:.0f} s. Where to look next:")
    print("  the exercises (a broken test, a worse model, a canary that fails):")
    print("  level2_cicd/README.md; files: " + str(root))
    return {"lead_time_s": lead_time, "total_s": time.monotonic() - started}


def main() -> None:
    try:
        demo(DemoSettings())
    except (ServerError, RuntimeError) as failure:
        sys.exit(f"\ndemo failed: {failure}")


if __name__ == "__main__":
    main()
