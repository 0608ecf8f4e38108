"""Flow runs whose worker is lost (a killed container, an evicted pod, a machine gone): a run
whose process dies without a word stays `Running` on the server for ever, holding a slot of
its pool's concurrency limit. Prefect's answer is heartbeats and automations
(https://docs.prefect.io/v3/advanced/detect-zombie-flows); this module writes the two
automations a deployment whose runs nobody waits on gets (level2_cicd/flows/pool_drill.py):

    crash-silent-flow-runs/<deployment>   a run of the deployment that goes quiet (no
                                          heartbeat, no state change) for `silent_after`
                                          seconds is marked Crashed; its slot is free again
    retry-crashed-runs/<deployment>       a run the first crashed before or during its
                                          first attempt is scheduled again (AwaitingRetry)

Heartbeats come from each flow run's process every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds
(30 where these are used, Prefect's floor); a run is called silent after 2.5 of them. Both
automations are scoped to one deployment: a run without heartbeats (the setting unset where
it runs) would look silent to the first. Neither forces a state: Prefect refuses to crash a
run that has already ended, so a heartbeat that reaches the server after its run's last
state cannot undo it.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.settings import get_current_settings

CRASH_SILENT = "crash-silent-flow-runs"
RETRY_CRASHED = "retry-crashed-runs"

# A run is alive while it is being started, runs or beats: these events (re)start its
# silence clock. Submitting is the Pending state a worker sets as it takes the run; its pull
# steps (the code's checkout) come next; each attempt of a flow run is plainly Running.
ALIVE = {f"prefect.flow-run.{name}" for name in (
    "Pending", "Submitting", "InfrastructurePending", "pull-step.*", "Running", "heartbeat")}  # fmt: skip
# A run in one of these states may be quiet: it waits for a slot or a person, or it ended.
# They stop the clock; the run's other events (neither list) leave it running.
QUIET = {f"prefect.flow-run.{name}" for name in (
    "Scheduled", "Late", "AwaitingRetry", "AwaitingConcurrencySlot", "Paused", "Suspended",
    "Cancelling", "Cancelled", "Completed", "Failed", "TimedOut", "Crashed")}  # fmt: skip
SILENT = "No heartbeat"  # how the crashes this module makes begin


def silent_after() -> timedelta:
    """How long a run may say nothing before it is called lost: 2.5 heartbeats."""
    beat = get_current_settings().flows.heartbeat_frequency
    if beat is None:
        raise RuntimeError("PREFECT_FLOWS_HEARTBEAT_FREQUENCY is unset: runs send no heartbeat")
    return timedelta(seconds=2.5 * beat)


def _of(deployment_id: str) -> dict[str, str]:
    """Events of the deployment's runs: state changes and heartbeats name it as related."""
    return {"prefect.resource.role": "deployment",
            "prefect.resource.id": f"prefect.deployment.{deployment_id}"}  # fmt: skip


def crash_silent_runs(deployment: str, deployment_id: str,
                      after: timedelta | None = None) -> Automation:  # fmt: skip
    after = after or silent_after()
    return Automation(
        name=f"{CRASH_SILENT}/{deployment}",
        description=f"A run of {deployment} silent for {after.total_seconds():.0f} s (its "
        "process is gone with its worker) is marked Crashed (level2_cicd/lost_runs.py).",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_of(deployment_id),
            after=ALIVE,
            expect=ALIVE | QUIET,  # another sign of life, or a state that may be quiet
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=after,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"{SILENT} for {after.total_seconds():.0f} s: its worker is gone.",
            )
        ],  # fmt: skip
    )


def retry_crashed_runs(deployment: str, deployment_id: str) -> Automation:
    return Automation(
        name=f"{RETRY_CRASHED}/{deployment}",
        description=f"A run of {deployment} lost with its worker (crashed for silence) before "
        "or during its first attempt runs once more (level2_cicd/lost_runs.py).",
        trigger=EventTrigger(
            match={
                "prefect.resource.id": "prefect.flow-run.*",
                # 1 once it has started, 0 if it was lost before (taken, not yet Running)
                "prefect.run-count": ["0", "1"],
                # Crashed for silence only: a run whose own process crashed (its code, its
                # image) would crash again, and is left to a person
                "prefect.state-message": f"{SILENT}*",
            },
            match_related=_of(deployment_id),
            expect={"prefect.flow-run.Crashed"},
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="AwaitingRetry",
                message="Lost with its worker on its first attempt: scheduled once more.",
            )
        ],  # fmt: skip
    )


async def install(*automations: Automation) -> None:
    """Create each automation, replacing the one of the same name (idempotent at start)."""
    for automation in automations:
        with suppress(ValueError):  # none yet
            await (await Automation.aread(name=automation.name)).adelete()
        await automation.acreate()
