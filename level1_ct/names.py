"""Level 1's names, each defined once: its flows and their deployments, the registry's aliases
and the Prefect events that close the loop. A leaf module: it imports nothing, so the flows, the
service, the run command, level 2 and the tests all take their names from here.

    ct-training/ct-training        train, gate, register; on a schedule, new data, drift, demand
    ct-monitoring/ct-monitoring    drift and live quality, every monitor_interval_seconds
    ct-watch-landing/...           announces each new batch in the landing folder
    ct-replay/ct-replay            the simulated world: lands days and sends their traffic
"""

from __future__ import annotations

# The flows; each is served as a deployment of the same name ("<flow>/<deployment>")
TRAINING = "ct-training"
MONITORING = "ct-monitoring"
WATCH_LANDING = "ct-watch-landing"
REPLAY = "ct-replay"


def deployment(flow: str) -> str:
    """The deployment's full name, as run_deployment takes it."""
    return f"{flow}/{flow}"


# The registry's aliases (level1_ct/registry.py says what each means)
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"

# The landing folder's subfolder where the data contract's refused files go, with their reasons
QUARANTINE = "quarantine"

# The Prefect events (level1_ct/events.py emits them; the training deployment has a trigger each)
DATA_LANDED = "churn.data.landed"  # the landing watcher saw a new batch
DRIFT_DETECTED = "churn.drift.detected"  # monitoring saw drift or a quality drop
EVENT_RESOURCE = "churn.level1"  # every event is about this resource
