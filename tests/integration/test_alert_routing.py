"""Pages leave the machine: Debian's Alertmanager, run with the configuration
shared/alert_routing.py renders, delivers a page to the inbox, a generic webhook, a Slack
incoming webhook (all three played by a local HTTP server that records what it is sent) and
e-mail (a local SMTP server that keeps what it is sent), and an automatic action to the inbox
only. Level 1's live-quality drop goes both ways: a page and the retrain."""

from __future__ import annotations

import email
import json
import socketserver
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


@pytest.fixture
def mailbox():
    """A local SMTP server (RFC 5321's plain dialogue, no TLS) that keeps each message."""
    mails: list[email.message.Message] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            def say(reply: str) -> None:
                self.wfile.write(f"{reply}\r\n".encode())

            say("220 sink ESMTP")
            data: list[str] | None = None
            while line := self.rfile.readline().decode():
                if data is not None:  # the message, up to a line with a single dot
                    if line.rstrip("\r\n") == ".":
                        mails.append(email.message_from_string("".join(data)))
                        data = None
                        say("250 kept")
                    else:
                        data.append(line.removeprefix("."))
                    continue
                verb = line.split(" ", 1)[0].strip().upper()
                if verb == "EHLO":
                    say("250 sink")
                elif verb == "DATA":
                    data = []
                    say("354 end with a dot")
                elif verb == "QUIT":
                    say("221 bye")
                    return
                else:  # HELO, MAIL FROM, RCPT TO, RSET, NOOP
                    say("250 ok")

    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"{LOOPBACK}:{server.server_address[1]}", mails
    server.shutdown()


def test_a_page_reaches_every_destination_and_an_automatic_action_only_the_inbox(
    sink, mailbox, tmp_path
):
    binary = tool("prometheus-alertmanager")
    url, received = sink
    smarthost, mails = mailbox
    config = tmp_path / "alertmanager.yml"
    env = {
        "ALERT_INBOX_URL": f"{url}/inbox",
        "ALERT_WEBHOOK_URL": f"{url}/hook",
        "ALERT_SLACK_WEBHOOK_URL": f"{url}/slack",
        "ALERT_EMAIL_TO": "oncall@example.org",
        "ALERT_SMTP_SMARTHOST": smarthost,
        "ALERT_SMTP_FROM": "alertmanager@example.org",
        "ALERT_SMTP_REQUIRE_TLS": "false",
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
            {"labels": {"alertname": "DriftHigh", "action": "retrain", "reason": "drift",
                        "level": "1"},
             "annotations": {"summary": "40% of the champion's features drifted"},
             "startsAt": now},
            {"labels": {"alertname": "LiveQualityDrop", "action": "retrain", "reason": "drift",
                        "level": "1"},
             "annotations": {"summary": "live ROC AUC 0.61 is under the champion's hold-out bar"},
             "startsAt": now},
        ]  # fmt: skip
        httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts).raise_for_status()

        def delivered():
            paths = sorted(p for p, _ in received)
            return paths if len(paths) >= 8 and len(mails) >= 2 else None

        # group_wait is 10 s for pages, 5 s for automatic actions
        paths = wait_until(delivered, 40, "Alertmanager to deliver every alert", every=0.5)
    assert paths == ["/hook"] * 2 + ["/inbox"] * 4 + ["/slack"] * 2
    by_path: dict[str, list[dict]] = {}
    for path, body in received:
        by_path.setdefault(path, []).append(body)
    inbox = sorted((b["commonLabels"]["alertname"], b["receiver"]) for b in by_path["/inbox"])
    assert inbox == [("BatchQuarantined", "person"), ("DriftHigh", "automation"),
                     ("LiveQualityDrop", "automation"), ("LiveQualityDrop", "person")]  # fmt: skip
    hooked = {b["alerts"][0]["labels"]["alertname"] for b in by_path["/hook"]}
    assert hooked == {"BatchQuarantined", "LiveQualityDrop"}  # pages only
    slack = next(
        b["attachments"][0] for b in by_path["/slack"]
        if b["attachments"][0]["title"] == "FIRING: BatchQuarantined"
    )  # fmt: skip
    mailed = sorted(m["Subject"] for m in mails)
    assert len(mailed) == 2 and "BatchQuarantined" in mailed[0] and "LiveQualityDrop" in mailed[1]
    assert {m["To"] for m in mails} == {"oncall@example.org"}
    assert "DriftHigh" not in " ".join(m.as_string() for m in mails)  # not a page
    assert "runbook: level1_ct/README.md#runbook-batchquarantined" in slack["text"], slack
