"""Alertmanager's configuration with the pages forwarded where `.env` says: e-mail, Slack, a
generic webhook, beside the alert inbox that always gets them.

Alertmanager 0.25 (Debian bookworm) does not expand environment variables in its file, and
a receiver cannot be left empty, so the routes stay in the committed file
(infra/compose/alertmanager/alertmanager.yml) and this renders the destinations into a copy
at start: in the stacks inside the Alertmanager container (python3 from Debian's packages,
the rendered file in /tmp, so no secret is written to a volume), in the embedded mode by the
demo. Standard library and PyYAML only, since that is all the container has; an unset or
empty variable adds nothing.

    ALERT_INBOX_URL            where both receivers post (default: the file's, the stack's inbox)
    ALERT_WEBHOOK_URL          pages also POSTed here (Alertmanager's webhook JSON)
    ALERT_SLACK_WEBHOOK_URL    pages also sent to this Slack incoming webhook
    ALERT_SLACK_CHANNEL        ... in this channel (default: the webhook's own)
    ALERT_EMAIL_TO             pages also e-mailed here; then ALERT_SMTP_SMARTHOST (host:port)
                               and ALERT_SMTP_FROM are required, ALERT_SMTP_USERNAME,
                               ALERT_SMTP_PASSWORD and ALERT_SMTP_REQUIRE_TLS (true) optional

    python3 shared/alert_routing.py BASE.yml OUT.yml   # reads the environment
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

PAGES = "person"  # the receiver of every alert whose action is not automatic
BASE = Path(__file__).resolve().parents[1] / "infra/compose/alertmanager/alertmanager.yml"


class RoutingError(ValueError):
    """A destination is configured in part: names the variable that is missing."""


def destinations(env: Mapping[str, str]) -> dict[str, list[dict]]:
    """The extra notifier configs of the pages' receiver, from the ALERT_* variables."""

    def get(name: str) -> str | None:
        return env.get(name) or None  # empty counts as unset (compose passes `${X:-}`)

    found: dict[str, list[dict]] = {}
    if url := get("ALERT_WEBHOOK_URL"):
        found["webhook_configs"] = [{"url": url, "send_resolved": True}]
    if url := get("ALERT_SLACK_WEBHOOK_URL"):
        slack = {
            "api_url": url,
            "send_resolved": True,
            "title": "{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}",
            "text": "{{ range .Alerts }}{{ .Annotations.summary }} "
            "(runbook: {{ .Annotations.runbook }})\n{{ end }}",
        }
        if channel := get("ALERT_SLACK_CHANNEL"):
            slack["channel"] = channel
        found["slack_configs"] = [slack]
    if to := get("ALERT_EMAIL_TO"):
        missing = [n for n in ("ALERT_SMTP_SMARTHOST", "ALERT_SMTP_FROM") if not get(n)]
        if missing:
            raise RoutingError(f"ALERT_EMAIL_TO is set: set {' and '.join(missing)} too")
        tls = (get("ALERT_SMTP_REQUIRE_TLS") or "true").lower()
        if tls not in ("true", "false"):
            raise RoutingError(f"ALERT_SMTP_REQUIRE_TLS must be true or false, not {tls!r}")
        email = {
            "to": to,
            "from": get("ALERT_SMTP_FROM"),
            "smarthost": get("ALERT_SMTP_SMARTHOST"),
            "require_tls": tls == "true",
            "send_resolved": True,
        }
        if user := get("ALERT_SMTP_USERNAME"):
            email["auth_username"] = user
            email["auth_password"] = get("ALERT_SMTP_PASSWORD") or ""
        found["email_configs"] = [email]
    return found


_MATCHER = re.compile(r'^\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def _matches(matcher: str, labels: Mapping[str, str]) -> bool:
    name, op, value = _MATCHER.match(matcher).groups()
    found = labels.get(name, "")
    if op in ("=~", "!~"):
        hit = re.fullmatch(value, found) is not None
        return hit if op == "=~" else not hit
    return (found == value) if op == "=" else (found != value)


@functools.cache
def _committed_route() -> dict:
    return yaml.safe_load(BASE.read_text())["route"]


def receivers(labels: Mapping[str, str], route: dict | None = None) -> list[str]:
    """The receivers Alertmanager's routing tree sends an alert with `labels` to (the
    committed file by default), as `amtool config routes test` does: the first matching
    child route, and the ones after it while a match says `continue: true`; the route's own
    receiver when no child matches. Matchers: `name="v"`, `!=`, `=~`, `!~`."""
    route = route or _committed_route()
    found: list[str] = []
    for child in route.get("routes", []):
        if {"match", "match_re"} & child.keys():
            raise RoutingError("use `matchers:` in routes: `match`/`match_re` are not read here")
        if all(_matches(m, labels) for m in child.get("matchers", [])):
            found += receivers(labels, {"receiver": route["receiver"], **child})
            if not child.get("continue", False):
                break
    return found or [route["receiver"]]


def render(base: dict, env: Mapping[str, str]) -> dict:
    """The committed configuration with the inbox's URL and the pages' destinations."""
    config = yaml.safe_load(yaml.safe_dump(base))  # a deep copy
    inbox = env.get("ALERT_INBOX_URL") or None
    for receiver in config["receivers"]:
        if inbox:
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = inbox
        if receiver["name"] == PAGES:
            for kind, configs in destinations(env).items():
                receiver.setdefault(kind, []).extend(configs)
    return config


def write(base: Path, out: Path, env: Mapping[str, str]) -> list[str]:
    """Render `base` into `out` (readable by its owner only); the destinations added."""
    config = render(yaml.safe_load(base.read_text()), env)
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file too
    with os.fdopen(descriptor, "w") as file:
        file.write(yaml.safe_dump(config, sort_keys=False))
    return [kind.removesuffix("_configs") for kind in destinations(env)]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: alert_routing.py BASE.yml OUT.yml")
    try:
        added = write(Path(args[0]), Path(args[1]), os.environ)
    except RoutingError as error:
        sys.exit(f"alert routing: {error}")
    print(f"alert routing: pages go to the inbox{''.join(', ' + a for a in added)}", flush=True)


if __name__ == "__main__":
    main()
