"""The alert inbox behind Alertmanager's webhook (shared/alert_inbox.py): an alert with an
action starts it once, a flapping alert is held back by the rate limit, a failed start is
retried, a page waits for a person, resolved alerts stay in the history, and the history
survives a restart. The payloads are Alertmanager's webhook format (version 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shared.alert_inbox import Action, Inbox, Notification, create_app

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def alert(name="DriftHigh", status="firing", fingerprint="f1", starts=T0, action="retrain",
          ends=None) -> dict:  # fmt: skip
    return {
        "status": status,
        "labels": {"alertname": name, "action": action, "job": "pipeline", "reason": "drift"},
        "annotations": {"summary": f"{name} summary"},
        "startsAt": starts.isoformat(),
        "endsAt": (ends or datetime(1, 1, 1, tzinfo=UTC)).isoformat(),
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict, receiver="automation") -> Notification:
    return Notification.model_validate({
        "version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0,
        "status": "resolved" if all(a["status"] == "resolved" for a in alerts) else "firing",
        "receiver": receiver, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": list(alerts),
    })  # fmt: skip


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


class Starts:
    """A fake action: records each start; `fail` makes the next start raise."""

    def __init__(self):
        self.keys: list[str] = []
        self.fail = False

    def __call__(self, alert, key) -> str:
        if self.fail:
            self.fail = False
            raise ConnectionError("Prefect is down")
        self.keys.append(key)
        return f"flow run {len(self.keys)}"


@pytest.fixture
def parts(tmp_path):
    clock, starts = Clock(), Starts()
    inbox = Inbox(f"sqlite:///{tmp_path}/inbox.db", [Action("retrain", starts, 300)], now=clock)
    return inbox, clock, starts


def test_an_alert_starts_its_action_once_however_often_alertmanager_repeats_it(parts):
    inbox, clock, starts = parts
    first = inbox.receive(notification(alert()))
    clock.now += timedelta(minutes=20)  # past the rate limit: a repeat is still the same alert
    again = inbox.receive(notification(alert()))
    assert [first[0]["outcome"], again[0]["outcome"]] == ["started", "started"]
    assert starts.keys == [f"f1-{int(T0.timestamp())}"]
    [row] = inbox.history()
    assert row["notifications"] == 2 and row["detail"] == "flow run 1"


def test_a_flapping_alert_is_held_back_by_the_rate_limit_and_says_why(parts):
    inbox, clock, starts = parts
    inbox.receive(notification(alert(starts=T0)))
    clock.now += timedelta(seconds=60)  # resolved, then fires again: a new alert
    inbox.receive(notification(alert(status="resolved", starts=T0, ends=clock.now)))
    held = inbox.receive(notification(alert(starts=clock.now)))[0]
    assert held["outcome"] == "held"
    assert "retrain was started 60 s ago for DriftHigh" in held["detail"]
    assert "at most one every 300 s" in held["detail"]
    assert len(starts.keys) == 1
    clock.now += timedelta(seconds=300)  # a third firing after the interval starts again
    assert inbox.receive(notification(alert(starts=clock.now)))[0]["outcome"] == "started"
    assert len(starts.keys) == 2


def test_another_alert_with_the_same_action_is_held_back_too(parts):
    inbox, clock, starts = parts
    inbox.receive(notification(alert("DriftHigh", fingerprint="a")))
    other = inbox.receive(notification(alert("LiveQualityDrop", fingerprint="b")))[0]
    assert other["outcome"] == "held" and "for DriftHigh" in other["detail"]
    assert len(starts.keys) == 1


def test_a_start_that_failed_is_tried_again_at_the_next_notification(parts):
    inbox, clock, starts = parts
    starts.fail = True
    failed = inbox.receive(notification(alert()))[0]
    assert failed["outcome"] == "failed" and "Prefect is down" in failed["detail"]
    assert inbox.receive(notification(alert()))[0]["outcome"] == "started"
    assert len(starts.keys) == 1


def test_a_page_waits_for_a_person_and_starts_nothing(parts):
    inbox, clock, starts = parts
    paged = inbox.receive(notification(alert("ModelStale", action="page"), receiver="person"))
    assert paged[0]["outcome"] == "paged" and not starts.keys


def test_the_receiver_decides_an_alert_routed_to_both_is_paged_and_acted_on(parts):
    """Level 1's live-quality drop reaches both receivers (Alertmanager's `continue`): one
    row per destination, the page waiting and the retrain started once; the pages' receiver
    never starts an action, whatever the alert's label says."""
    inbox, clock, starts = parts
    quality = alert("LiveQualityDrop", fingerprint="q")
    assert inbox.receive(notification(quality, receiver="person"))[0]["outcome"] == "paged"
    assert not starts.keys
    assert inbox.receive(notification(quality))[0]["outcome"] == "started"
    assert inbox.receive(notification(quality, receiver="person"))[0]["outcome"] == "paged"
    rows = inbox.history()
    assert sorted((r["name"], r["action"], r["outcome"]) for r in rows) == [
        ("LiveQualityDrop", "page", "paged"), ("LiveQualityDrop", "retrain", "started")
    ]  # fmt: skip
    assert len(starts.keys) == 1


def test_a_history_kept_before_keys_named_the_destination_goes_on(tmp_path):
    """An alert recorded under its old key (fingerprint and start only) is the same alert
    after the upgrade: its resolution closes it, a repeat starts nothing again."""
    db = f"sqlite:///{tmp_path}/old.db"
    starts = Starts()
    Inbox(db, [Action("retrain", starts, 60)], now=Clock()).receive(notification(alert()))
    engine = sa.create_engine(db)
    with engine.begin() as conn:  # as the previous version keyed it
        conn.execute(sa.text("UPDATE alerts SET key = substr(key, 1, instr(key, ':') - 1)"))
    upgraded = Inbox(db, [Action("retrain", starts, 60)], now=Clock())
    assert upgraded.receive(notification(alert()))[0]["outcome"] == "started"  # a repeat
    upgraded.receive(notification(alert(status="resolved", ends=T0 + timedelta(minutes=5))))
    [row] = upgraded.history()
    assert row["status"] == "resolved" and len(starts.keys) == 1


def test_an_unknown_action_is_a_page_rather_than_nothing(parts):
    inbox, clock, starts = parts
    assert inbox.receive(notification(alert(action="reboot")))[0]["outcome"] == "paged"


def test_resolved_alerts_stay_in_the_history_which_survives_a_restart(parts, tmp_path):
    inbox, clock, starts = parts
    inbox.receive(notification(alert("ModelStale", action="page", fingerprint="p")))
    ended = T0 + timedelta(minutes=5)
    inbox.receive(notification(alert("ModelStale", "resolved", "p", action="page", ends=ended)))
    restarted = Inbox(f"sqlite:///{tmp_path}/inbox.db", [])
    [row] = restarted.history()
    assert row["status"] == "resolved" and row["outcome"] == "paged"
    assert row["ends_at"] == ended.isoformat()


def test_the_webhook_and_the_inbox_page_over_http(parts):
    inbox, clock, starts = parts
    client = TestClient(create_app(inbox, "Level 1 alerts"))
    payload = notification(alert(), alert("ModelStale", action="page", fingerprint="p"))
    answer = client.post("/alertmanager", json=payload.model_dump(mode="json"))
    assert answer.status_code == 200
    assert [a["outcome"] for a in answer.json()] == ["started", "paged"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "ModelStale" in page.text and "DriftHigh" in page.text and "2 firing" in page.text
    assert {a["name"] for a in client.get("/alerts").json()} == {"DriftHigh", "ModelStale"}
    metrics = client.get("/metrics").text
    assert 'churn_alerts_handled_total{action="retrain",outcome="started"} 1.0' in metrics
    # Not Alertmanager's payload: a 422 naming the field, nothing recorded
    refused = client.post("/alertmanager", json={"status": "firing", "receiver": "x"})
    assert refused.status_code == 422 and "alerts" in refused.text
    assert len(client.get("/alerts").json()) == 2


def test_html_in_an_alert_is_shown_as_text(parts):
    inbox, clock, starts = parts
    evil = alert("X", action="page") | {"annotations": {"summary": "<script>alert(1)</script>"}}
    inbox.receive(notification(evil))
    page = TestClient(create_app(inbox, "t")).get("/").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
