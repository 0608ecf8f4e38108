"""Prometheus and Alertmanager as local processes, for the embedded mode (`make demo`), when
the machine has Debian's packages (`apt-get install prometheus prometheus-alertmanager`).

The stacks run the same binaries in containers (infra/compose/prometheus.yaml,
alertmanager.yaml) with each level's committed prometheus.yml; here the scrape targets are
local ports, so the configuration is written for them, with the same rule files and the same
Alertmanager routes (rendered by shared/alert_routing.py). Without the binaries nothing fails:
`missing()` names what to install, and the caller says what it skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from shared import alert_routing
from shared.servers import LOOPBACK, running
from shared.waiting import wait_until

PROMETHEUS, ALERTMANAGER = "prometheus", "prometheus-alertmanager"  # Debian's binaries
INSTALL = "sudo apt-get install prometheus prometheus-alertmanager"


def missing() -> list[str]:
    """The binaries this machine lacks (empty: the embedded mode can run both)."""
    return [name for name in (PROMETHEUS, ALERTMANAGER) if shutil.which(name) is None]


@dataclass(frozen=True)
class AlertmanagerServer:
    """Alertmanager with the stacks' routes, every receiver posting to `inbox_url`."""

    root: Path
    inbox_url: str
    port: int = 9093

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.root / "alertmanager.yml"

    def write_config(self) -> None:
        """The stacks' routes (alert_routing.BASE), every receiver posting to the inbox, and
        the pages' destinations the environment sets (ALERT_*), as in the stacks."""
        env = {**os.environ, "ALERT_INBOX_URL": self.inbox_url}
        alert_routing.write(alert_routing.BASE, self.config_file, env)

    def command(self) -> list[str]:
        config = self.config_file
        return [
            shutil.which(ALERTMANAGER) or ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={self.root / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ]


@dataclass(frozen=True)
class PrometheusServer:
    """Prometheus scraping `targets` (job -> host:port), evaluating `rule_files`, alerting
    `alertmanager` (a URL) if given. Scrapes and evaluates every 5 s: a demo is short."""

    root: Path
    targets: dict[str, str]
    rule_files: tuple[Path, ...] = ()
    alertmanager: str | None = None
    port: int = 9090
    interval: str = "5s"
    labels: tuple[tuple[str, str], ...] = ()  # external labels, as the stack's (level="1")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def config(self) -> dict:
        config = {
            "global": {
                "scrape_interval": self.interval,
                "evaluation_interval": self.interval,
                "external_labels": dict(self.labels),
            },
            "rule_files": [str(p.resolve()) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in self.targets.items()
            ],
        }
        if self.alertmanager:
            host = self.alertmanager.removeprefix("http://")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
        return config

    @property
    def config_file(self) -> Path:
        return self.root / "prometheus.yml"

    def write_config(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def command(self) -> list[str]:
        path = self.config_file
        return [
            shutil.which(PROMETHEUS) or PROMETHEUS,
            f"--config.file={path}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]

    def query(self, promql: str) -> list[dict]:
        """An instant query's result vector."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    def rules(self) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/rules", timeout=5)
        answer.raise_for_status()
        return [rule for group in answer.json()["data"]["groups"] for rule in group["rules"]]

    def wait_for_targets(self, timeout: float = 30) -> dict[str, bool]:
        """Wait until every target was scraped once; {job: up}."""

        def scraped() -> dict[str, bool] | None:
            up = {r["metric"]["job"]: r["value"][1] == "1" for r in self.query("up")}
            return up if set(up) >= set(self.targets) else None

        return wait_until(scraped, timeout, f"Prometheus at {self.url} to scrape its targets")


@contextmanager
def alertmanager_server(server: AlertmanagerServer, log: Path) -> Iterator[AlertmanagerServer]:
    server.write_config()
    with running(server.command(), f"{server.url}/-/ready", log, timeout=30):
        yield server


@contextmanager
def prometheus_server(server: PrometheusServer, log: Path) -> Iterator[PrometheusServer]:
    server.write_config()
    with running(server.command(), f"{server.url}/-/ready", log, timeout=60):
        yield server
