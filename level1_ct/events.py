"""The Prefect events that close level 1's loop. Emitting one is all a flow does to start
another: the training deployment has a trigger for each (see flows/deployments.py)."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from level1_ct.names import DATA_LANDED, DRIFT_DETECTED
from level1_ct.names import EVENT_RESOURCE as RESOURCE

__all__ = ["DATA_LANDED", "DRIFT_DETECTED", "RESOURCE", "emit"]


def emit(event: str, source: str, payload: dict[str, Any]) -> None:
    emit_event(
        event=event,
        resource={"prefect.resource.id": f"{RESOURCE}.{source}", "prefect.resource.name": source},
        payload=payload,
    )
