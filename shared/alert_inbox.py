"""Where Alertmanager's alerts end: an action the platform takes by itself, or a person's inbox.

Alertmanager does the routing, grouping, repeating and silencing; this is only the thin
receiver behind its webhook (infra/compose/alertmanager/alertmanager.yml), and each level says
which actions it has (level1_ct/alerts.py, level2_cicd/alerts.py).

    POST /alertmanager   Alertmanager's webhook (payload version 4)
    GET  /               the inbox: every alert, firing and resolved, with what was done (HTML)
    GET  /alerts         the same as JSON, newest first
    GET  /health, GET /metrics

Alertmanager's receiver says which: an alert sent to the pages' receiver (`person`) is a page,
it waits in the inbox for a person; one sent to `automation` starts the level's action its
`action` label names (an action the level lacks is a page rather than nothing). An alert routed
to both (level 1's live-quality drop) is recorded twice: paged, and its action. Starting an
action is

- idempotent: one alert (Alertmanager's fingerprint and start time) starts it at most once,
  however often Alertmanager repeats the notification, and the key goes with the start (the
  level passes it to Prefect as the flow run's idempotency key);
- rate-limited: an action started less than its `min_interval_seconds` ago is not started
  again, whichever alert asks (a flapping alert is a new alert each time it fires); the inbox
  says why it was held back;
- retried: a start that failed is tried again at the next notification.

History (open and resolved) lives in a SQLite file (ALERTS_DB), so it survives restarts.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.alert_routing import PAGES
from shared.utc import as_utc

log = logging.getLogger(__name__)
PAGE = "page"  # the `action` label of an alert meant for a person


class InboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALERTS_", frozen=True)

    db: str = "sqlite:///var/alerts/inbox.db"
    host: str = "127.0.0.1"
    port: int = 8004


# ---- Alertmanager's webhook payload (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)


class Alert(BaseModel):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815 (Alertmanager's names)
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")

    @property
    def key(self) -> str:
        """One firing of one alert: what an action is started at most once for."""
        return f"{self.fingerprint}-{int(self.startsAt.timestamp())}"


class Notification(BaseModel):
    version: str = "4"
    status: Literal["firing", "resolved"]
    receiver: str
    alerts: list[Alert]
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815


@dataclass(frozen=True)
class Action:
    """Something the platform does by itself when an alert with `action: <name>` fires.
    `start(alert, key)` starts it and says what it started; it raises if it could not."""

    name: str
    start: Callable[[Alert, str], str]
    min_interval_seconds: float


# ---- the history --------------------------------------------------------------------------

metadata = sa.MetaData()
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),  # an action's name, or "page"
    sa.Column("outcome", sa.String(32), nullable=False),  # paged, started, held, failed
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True)),
    sa.Column("acted_at", sa.DateTime(timezone=True)),  # when the action was started
    sa.Column("notifications", sa.Integer, nullable=False, default=0),
)


class Inbox:
    """The receiver's state and decisions, apart from HTTP (tests call it directly)."""

    def __init__(self, db: str, actions: list[Action], now: Callable[[], datetime] | None = None):
        self.engine = sa.create_engine(db)
        if self.engine.dialect.name == "sqlite":
            from pathlib import Path

            path = self.engine.url.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:  # a history kept before keys named the destination
            conn.execute(
                alerts.update()
                .where(~alerts.c.key.contains(":"))
                .values(key=alerts.c.key + ":" + alerts.c.action)
            )
        self.actions = {a.name: a for a in actions}
        self.now = now or (lambda: datetime.now(UTC))
        self.lock = threading.Lock()  # one notification at a time: decisions see each other
        self.metrics = CollectorRegistry()
        self.handled = Counter(
            "churn_alerts_handled", "Alert notifications, by what was done",
            ["action", "outcome"], registry=self.metrics,
        )  # fmt: skip

    def receive(self, notification: Notification) -> list[dict]:
        paged = notification.receiver == PAGES
        with self.lock:
            return [
                self._one(alert, PAGE if paged else alert.labels.get("action", PAGE))
                for alert in notification.alerts
            ]

    def _one(self, alert: Alert, action: str) -> dict:
        key = f"{alert.key}:{action}"  # one firing of one alert, and what is done with it
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.key == key)).mappings().first()
            if row is None:
                conn.execute(alerts.insert().values(
                    key=key, name=alert.name, status=alert.status, action=action,
                    outcome="new", detail="", summary=alert.annotations.get("summary", ""),
                    labels=json.dumps(alert.labels, sort_keys=True), starts_at=alert.startsAt,
                    notifications=0,
                ))  # fmt: skip
                row = {"outcome": "new", "detail": ""}
            update = {"notifications": alerts.c.notifications + 1, "status": alert.status}
            if alert.status == "resolved":
                update["ends_at"] = alert.endsAt or self.now()
                outcome, detail = row["outcome"], row["detail"]
            elif row["outcome"] in ("new", "failed"):
                outcome, detail = self._decide(conn, alert, action)
                update |= {"outcome": outcome, "detail": detail}
                if outcome == "started":
                    update["acted_at"] = self.now()
            else:  # already paged, started or held: a repeat of the same firing
                outcome, detail = row["outcome"], row["detail"]
            conn.execute(alerts.update().where(alerts.c.key == key).values(**update))
        if alert.status == "firing":
            self.handled.labels(action, outcome).inc()
        log.info("%s %s (%s): %s %s", alert.status, alert.name, alert.key, outcome, detail)
        return {"alert": alert.name, "status": alert.status, "outcome": outcome, "detail": detail}

    def _decide(self, conn: sa.Connection, alert: Alert, action: str) -> tuple[str, str]:
        if action not in self.actions:
            return "paged", "waiting for a person in the inbox"
        found = self.actions[action]
        last = conn.execute(
            sa.select(alerts.c.name, alerts.c.acted_at, alerts.c.detail)
            .where(alerts.c.action == action, alerts.c.outcome == "started")
            .order_by(alerts.c.acted_at.desc())
            .limit(1)
        ).first()
        if last is not None:
            ago = (self.now() - as_utc(last.acted_at)).total_seconds()
            if ago < found.min_interval_seconds:
                return "held", (
                    f"{action} was started {ago:.0f} s ago for {last.name} ({last.detail}); "
                    f"at most one every {found.min_interval_seconds:.0f} s"
                )
        try:
            return "started", found.start(alert, alert.key)
        except Exception as error:
            log.exception("could not start %s for %s", action, alert.name)
            return "failed", f"{type(error).__name__}: {error}"[:500]

    def history(self, limit: int = 200) -> list[dict]:
        query = sa.select(alerts).order_by(alerts.c.starts_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            {**row, "labels": json.loads(row["labels"]),
             **{k: as_utc(row[k]).isoformat() if row[k] else None
                for k in ("starts_at", "ends_at", "acted_at")}}
            for row in rows
        ]  # fmt: skip


def page(items: list[dict], title: str) -> str:
    """The inbox as one HTML page (refreshes itself every 10 s)."""
    firing = sum(1 for i in items if i["status"] == "firing")
    rows = "\n".join(
        f'<tr class="{i["status"]}"><td>{i["status"]}</td><td>{html.escape(i["name"])}</td>'
        f"<td>{html.escape(i['summary'])}</td><td>{html.escape(i['action'])}: "
        f"{html.escape(i['outcome'])}<br><small>{html.escape(i['detail'])}</small></td>"
        f"<td>{(i['starts_at'] or '')[:19]}</td><td>{(i['ends_at'] or '')[:19]}</td></tr>"
        for i in items
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}}
tr.firing td:first-child{{color:#b00;font-weight:bold}} tr.resolved{{color:#666}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p id="counts">{firing} firing, {len(items) - firing} resolved. Every alert Alertmanager sent,
newest first: pages wait here for a person; automatic actions say what they started.</p>
<table><thead><tr><th>status</th><th>alert</th><th>summary</th><th>handled</th>
<th>started (UTC)</th><th>resolved (UTC)</th></tr></thead>
<tbody>
{rows or '<tr><td colspan="6">No alert yet.</td></tr>'}
</tbody></table></body></html>"""


def create_app(inbox: Inbox, title: str) -> FastAPI:
    app = FastAPI(title=title, description=__doc__.split("\n\n")[0])

    @app.post("/alertmanager")
    def alertmanager(notification: Notification) -> list[dict]:
        """Alertmanager's webhook: record each alert; start its action or page a person."""
        return inbox.receive(notification)

    @app.get("/", response_class=HTMLResponse)
    def inbox_page() -> str:
        return page(inbox.history(), title)

    @app.get("/alerts")
    def history() -> list[dict]:
        return inbox.history()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "actions": sorted(inbox.actions)}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(inbox.metrics), media_type=CONTENT_TYPE_LATEST)

    return app


def run(actions: list[Action], title: str) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = InboxSettings()
    app = create_app(Inbox(settings.db, actions), title)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
