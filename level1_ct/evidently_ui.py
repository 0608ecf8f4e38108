"""The Evidently UI over level 1's workspace folder (embedded mode): `evidently ui`, with a
folder watcher that survives a half-written file.

    python -m level1_ct.evidently_ui --workspace var/level1/evidently --port 8002

Evidently's UI (0.7.23) watches its workspace folder with watchdog and loads a project when
its `metadata.json` appears or changes. It reads the file on the *created* event, and there
the file may still be empty: monitoring's `reports.publish` has created it and not yet
written it (seen on a busy machine). `json.load` then raises in the watcher's thread, which
ends it, and the UI lists no new project or report until it is restarted. Evidently's own
handler already skips a report it cannot parse yet; a project gets the same here: skipped,
and loaded on the *modified* event that the end of the write brings.

The container stacks publish through the UI's HTTP API (`L1_EVIDENTLY_WORKSPACE` is its URL),
which updates the UI's state itself: they run `evidently ui` as it is.
"""

from __future__ import annotations

import sys
from json import JSONDecodeError

from evidently.ui.service.storage.local.watcher import WorkspaceDirHandler

_load_project_event = WorkspaceDirHandler.on_project_event


def on_project_event(handler: WorkspaceDirHandler, event) -> None:
    """Evidently's handler, for a project file complete enough to read; nothing otherwise."""
    try:
        _load_project_event(handler, event)
    except JSONDecodeError:
        return  # half-written: the write's end brings a *modified* event, read then
    # A project first read on *modified* (its *created* event was skipped) needs the report
    # table that *created* makes, or its first report's event would fail the same way
    for project_id in handler.state.projects:
        handler.state.snapshots.setdefault(project_id, {})


def main() -> None:
    from evidently.cli import app

    WorkspaceDirHandler.on_project_event = on_project_event
    sys.argv = ["evidently", "ui", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
