"""The new-data trigger: a flow that looks at the landing folder and emits `churn.data.landed`
when a batch has landed since it last looked. The training deployment's trigger does the rest.

A scheduled watcher rather than a hook in the simulator, so that any file dropped into the
landing folder counts: the replay's, `make data`'s, or one a learner copies in by hand.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import Completed
from prefect.variables import Variable

from level1_ct import events, names
from level1_ct.settings import get_settings
from shared.data import feature_files

LAST_SEEN = "level1-last-seen-batch"  # a Prefect Variable: the newest batch already announced


@flow(name=names.WATCH_LANDING)
def watch_landing():
    """Emit `churn.data.landed` for batches newer than the last one announced."""
    settings = get_settings()
    landed = feature_files(settings.landing)
    last_seen = Variable.get(LAST_SEEN, default="")
    new = [p.name for p in landed if p.name > last_seen]
    if not new:
        return Completed(message=f"no new batch (newest: {last_seen or 'none'})")
    events.emit(events.DATA_LANDED, source="landing", payload={"batches": new})
    Variable.set(LAST_SEEN, new[-1], overwrite=True)
    get_run_logger().info("new batches %s: emitted %s", new, events.DATA_LANDED)
    return Completed(message=f"{len(new)} new batches up to {new[-1]}")
