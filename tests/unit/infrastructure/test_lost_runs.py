"""The lost-run automations (level2_cicd/lost_runs.py) and the worker drill's pieces, read
without a server: what each automation listens to and what it does, and that the drill's
compose file, Make target and module agree on the pool. The drill itself runs in the
container suite (tests/docker/test_level2_stack.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from prefect.client.schemas.objects import StateType
from prefect.events.schemas.automations import Posture
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from level2_cicd import lost_runs
from level2_cicd.flows import pool_drill
from tests.unit.test_compose import ROOT

DEPLOYMENT_ID = "00000000-0000-0000-0000-000000000001"


def test_a_silent_run_is_crashed_after_two_and_a_half_heartbeats_of_its_deployment_only():
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        automation = lost_runs.crash_silent_runs("pool-drill/drill", DEPLOYMENT_ID)
    trigger, [action] = automation.trigger, automation.actions
    assert automation.name == "crash-silent-flow-runs/pool-drill/drill"
    assert trigger.posture == Posture.Proactive and trigger.within == timedelta(seconds=75)
    # The clock starts at each sign of life and stops at any event of the run
    assert "prefect.flow-run.heartbeat" in trigger.after
    taken = {"prefect.flow-run.Pending", "prefect.flow-run.Submitting"}  # a worker took it
    assert {"prefect.flow-run.Running", *taken} <= trigger.after
    assert not trigger.after & {"prefect.flow-run.Scheduled", "prefect.flow-run.AwaitingRetry"}
    assert trigger.after <= trigger.expect and trigger.for_each == {"prefect.resource.id"}
    # A run's other events (its pull step's, say) neither start nor stop the clock: a run lost
    # after its code was pulled, before it ran, is still crashed
    assert "prefect.flow-run.*" not in trigger.expect
    assert "prefect.flow-run.pull-step.*" in trigger.after
    quiet = {"Scheduled", "AwaitingRetry", "Late", "Completed", "Failed", "Crashed", "Cancelled"}
    assert {f"prefect.flow-run.{name}" for name in quiet} <= trigger.expect - trigger.after
    assert (
        trigger.match_related.root["prefect.resource.id"] == f"prefect.deployment.{DEPLOYMENT_ID}"
    )
    assert action.state == StateType.CRASHED and not action.force  # an ended run stays ended


def test_no_heartbeat_setting_is_an_error_not_a_trap():
    unset = temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    with unset, pytest.raises(RuntimeError, match="PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):
        lost_runs.crash_silent_runs("pool-drill/drill", DEPLOYMENT_ID)


def test_a_run_crashed_on_its_first_attempt_is_scheduled_once_more():
    automation = lost_runs.retry_crashed_runs("pool-drill/drill", DEPLOYMENT_ID)
    trigger, [action] = automation.trigger, automation.actions
    assert trigger.posture == Posture.Reactive and trigger.expect == {"prefect.flow-run.Crashed"}
    assert trigger.match.root["prefect.run-count"] == ["0", "1"]  # a second crash stays Crashed
    # Only the crashes of the first automation: a run whose own process crashed is not retried
    assert trigger.match.root["prefect.state-message"] == "No heartbeat*"
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        crash = lost_runs.crash_silent_runs("pool-drill/drill", DEPLOYMENT_ID).actions[0]
    assert crash.message.startswith("No heartbeat")
    assert (
        trigger.match_related.root["prefect.resource.id"] == f"prefect.deployment.{DEPLOYMENT_ID}"
    )
    assert (action.state, action.name, action.force) == (
        StateType.SCHEDULED,
        "AwaitingRetry",
        False,
    )


def test_the_drill_s_workers_serve_its_pool_with_heartbeats_as_non_root():
    compose = yaml.safe_load((ROOT / "level2_cicd/compose.workers.yaml").read_text())
    worker = compose["services"]["pool-worker"]
    command = worker["command"]
    assert command[command.index("--pool") + 1] == pool_drill.POOL
    assert worker["user"] == "10001" and worker["restart"] == "no"
    assert int(worker["environment"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) >= 30  # Prefect's floor
    makefile = (ROOT / "Makefile").read_text()
    assert "-f level2_cicd/compose.workers.yaml" in makefile
    assert "python -m level2_cicd.flows.pool_drill" in makefile
