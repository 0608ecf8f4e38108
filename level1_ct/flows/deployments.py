"""Level 1's deployments, served by one long-running process (`flow.serve`-style runner).

    ct-training/ct-training        on a cron schedule, on `churn.data.landed`, on
                                   `churn.drift.detected` (or, in the stacks, on Alertmanager's
                                   drift alerts: level1_ct/alerts.py), and on demand
    ct-monitoring/ct-monitoring    every monitor_interval_seconds
    ct-watch-landing/ct-watch-landing  every watch_interval_seconds
    ct-replay/ct-replay            on demand (make level1-replay)

Why a served process rather than a work pool and a worker: level 1 has one machine and one
image, and `serve` needs nothing else (no pool to create, no job template); each flow run
still runs in its own subprocess (`python -m prefect.engine`, which imports the flow's module
and what it imports: a landing check that imported the training stack would cost seconds of
CPU every few seconds). Level 2 moves to versioned deployments.

    python -m level1_ct.flows.deployments [pipeline|simulator|all]   (default: all)

PREFECT_API_URL must point at the Prefect server. The container stack runs `pipeline` in the
runner container and `simulator` in the simulator container.
"""

from __future__ import annotations

import argparse
import os

from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from level1_ct import events, names
from level1_ct.flows.landing import watch_landing
from level1_ct.flows.monitoring import monitoring_flow
from level1_ct.flows.replay import replay
from level1_ct.flows.training import training_pipeline
from level1_ct.settings import PipelineSettings, get_settings


def _on(event: str, reason: str) -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name=f"retrain on {event}",
        expect={event},
        match={"prefect.resource.id": f"{events.RESOURCE}.*"},
        parameters={"reason": reason},
    )


def training_triggers(settings: PipelineSettings) -> dict:
    """When the training deployment runs by itself: the cron schedule, new data, drift.
    Level 2 gives the same triggers to the pipeline version it delivers. Drift has one path:
    this event trigger, or Alertmanager's webhook (L1_ALERT_ROUTE=alertmanager, the stacks:
    level1_ct/alerts.py starts the run), never both."""
    triggers = [_on(events.DATA_LANDED, "new-data")]
    if settings.alert_route == "prefect-event":
        triggers.append(_on(events.DRIFT_DETECTED, "drift"))
    return {
        "schedules": [Cron(settings.train_cron, timezone="UTC", parameters={"reason": "schedule"})],
        "triggers": triggers,
    }


def watchers(settings: PipelineSettings) -> list:
    """The flows whose events trigger training: monitoring and the landing watcher."""
    return [
        monitoring_flow.to_deployment(
            name=names.MONITORING, interval=settings.monitor_interval_seconds, concurrency_limit=1
        ),
        watch_landing.to_deployment(
            name=names.WATCH_LANDING, interval=settings.watch_interval_seconds, concurrency_limit=1
        ),
    ]


def pipeline(settings: PipelineSettings) -> list:
    """The CT pipeline: training with its four triggers, monitoring, the landing watcher."""
    training = training_pipeline.to_deployment(
        name=names.TRAINING,
        **training_triggers(settings),
        concurrency_limit=1,  # runs triggered together queue up instead of racing for the alias
        description="Train, gate and register; promote a passing candidate to champion.",
    )
    return [training, *watchers(settings)]


def simulator() -> list:
    """The world around the pipeline: the replay of a scenario's days and traffic."""
    return [replay.to_deployment(name=names.REPLAY, concurrency_limit=1)]


def main(argv: list[str] | None = None) -> None:
    # Flow runs are subprocesses of this one and inherit this. On a small machine they share
    # the cores with the service and the servers; OpenMP threads that spin-wait for a core
    # slowed training by orders of magnitude under such load (seen on 2 cores).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description="Serve level 1's deployments until stopped.")
    parser.add_argument("which", choices=["pipeline", "simulator", "all"], nargs="?", default="all")
    which = parser.parse_args(argv).which
    served = []
    if which in ("pipeline", "all"):
        served += pipeline(get_settings())
    if which in ("simulator", "all"):
        served += simulator()
    serve(*served)


if __name__ == "__main__":
    main()
