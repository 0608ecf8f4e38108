"""Level 1's alert receiver: what Alertmanager's alerts do at level 1 (shared/alert_inbox.py
is the receiver itself).

    DriftHigh, LiveQualityDrop (action: retrain)   start ct-training/ct-training with
                                                   reason "drift", at most once per
                                                   L1_RETRAIN_COOLDOWN_SECONDS
    every other alert (action: page)               waits for a person in the inbox

    python -m level1_ct.alerts      # the inbox on http://127.0.0.1:8004 (ALERTS_HOST/PORT)

In the stacks this is the one path from drift to a retrain (L1_ALERT_ROUTE=alertmanager: the
training deployment has no drift trigger there, so the Prefect event and the alert never race).
"""

from __future__ import annotations

from collections.abc import Callable

from prefect.client.orchestration import get_client

from level1_ct import names
from level1_ct.settings import get_settings
from shared.alert_inbox import Action, Alert, run

RETRAIN = "retrain"  # the `action` label of the alerts that start a retrain


def start_deployment(deployment: str) -> Callable[[Alert, str], str]:
    """Start a run of `deployment` for an alert, once per alert (Prefect's idempotency key:
    a second start with the same key returns the first run)."""

    def start(alert: Alert, key: str) -> str:
        with get_client(sync_client=True) as api:
            found = api.read_deployment_by_name(deployment)
            flow_run = api.create_flow_run_from_deployment(
                found.id,
                parameters={"reason": alert.labels.get("reason", "drift")},
                idempotency_key=f"alert-{key}",
                tags=["alert", alert.name],
            )
        return f"{deployment} flow run {flow_run.name} ({flow_run.id})"

    return start


def actions(deployment: str = names.deployment(names.TRAINING)) -> list[Action]:
    cooldown = get_settings().retrain_cooldown_seconds
    return [Action(RETRAIN, start_deployment(deployment), min_interval_seconds=cooldown)]


if __name__ == "__main__":
    run(actions(), "Level 1 alerts")
