"""The Prefect events that close level 1's loop. Emitting one is all a flow does to start
another: the training deployment has a trigger for each (see flows/deployments.py)."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

DATA_LANDED = "churn.data.landed"  # the landing watcher saw a new batch
DRIFT_DETECTED = "churn.drift.detected"  # monitoring saw drift or a quality drop
RESOURCE = "churn.level1"  # every event is about this resource


def emit(event: str, source: str, payload: dict[str, Any]) -> None:
    emit_event(
        event=event,
        resource={"prefect.resource.id": f"{RESOURCE}.{source}", "prefect.resource.name": source},
        payload=payload,
    )
