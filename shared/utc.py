"""Times read back from a database, in UTC: SQLite returns a stored datetime without its zone
(Postgres keeps it), so every reader of a stored time passes it through `as_utc`."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(when: datetime | None) -> datetime | None:
    """`when` with UTC as its zone if it has none (None stays None)."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
