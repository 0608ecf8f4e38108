"""Pages leave the machine: Debian's Alertmanager, run with the configuration
shared/alert_routing.py renders, delivers a page to the inbox, a generic webhook and a Slack
incoming webhook (all three played by a local HTTP server that records what it is sent),
and an automatic action to the inbox only. E-mail is checked by `amtool check-config` in
tests/unit/test_alert_rules.py (no SMTP server here)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from shared import alert_routing
from shared.servers import LOOPBACK, free_port, running
from shared.waiting import wait_until
from tests.prometheus_tools import tool


@pytest.fixture
def sink():
    """A local HTTP server that answers 200 to every POST and keeps (path, body)."""
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{LOOPBACK}:{server.server_port}", received
    server.shutdown()


def test_a_page_reaches_every_destination_and_an_automatic_action_only_the_inbox(sink, tmp_path):
    binary = tool("prometheus-alertmanager")
    url, received = sink
    config = tmp_path / "alertmanager.yml"
    env = {
        "ALERT_INBOX_URL": f"{url}/inbox",
        "ALERT_WEBHOOK_URL": f"{url}/hook",
        "ALERT_SLACK_WEBHOOK_URL": f"{url}/slack",
    }
    alert_routing.write(alert_routing.BASE, config, env)
    port = free_port()
    alertmanager = f"http://{LOOPBACK}:{port}"
    command = [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
               f"--web.listen-address={LOOPBACK}:{port}", "--cluster.listen-address="]  # fmt: skip
    with running(command, f"{alertmanager}/-/ready", tmp_path / "alertmanager.log", timeout=30):
        now = datetime.now(UTC).isoformat()
        alerts = [
            {"labels": {"alertname": "BatchQuarantined", "action": "page", "job": "pipeline"},
             "annotations": {"summary": "1 landed file broke the data contract",
                             "runbook": "level1_ct/README.md#runbook-batchquarantined"},
             "startsAt": now},
            {"labels": {"alertname": "DriftHigh", "action": "retrain", "reason": "drift"},
             "annotations": {"summary": "40% of the champion's features drifted"},
             "startsAt": now},
        ]  # fmt: skip
        httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts).raise_for_status()

        def delivered():
            paths = sorted(p for p, _ in received)
            return paths if len(paths) >= 4 else None

        # group_wait is 10 s for pages, 5 s for automatic actions
        paths = wait_until(delivered, 40, "Alertmanager to deliver both alerts", every=0.5)
    assert paths == ["/hook", "/inbox", "/inbox", "/slack"]
    by_path: dict[str, list[dict]] = {}
    for path, body in received:
        by_path.setdefault(path, []).append(body)
    inbox = {b["commonLabels"]["alertname"]: b["receiver"] for b in by_path["/inbox"]}
    assert inbox == {"BatchQuarantined": "person", "DriftHigh": "automation"}
    assert by_path["/hook"][0]["alerts"][0]["labels"]["alertname"] == "BatchQuarantined"
    slack = by_path["/slack"][0]["attachments"][0]
    assert slack["title"] == "FIRING: BatchQuarantined", slack
    assert "runbook: level1_ct/README.md#runbook-batchquarantined" in slack["text"], slack
