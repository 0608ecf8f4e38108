"""Every process the embedded mode starts binds 127.0.0.1 and is probed there, never on
`localhost` (which may resolve to ::1 where IPv6 is off: tests/integration/test_ipv6_off.py
starts level 1 on such a machine). Here: the settings each started process receives."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from prefect.settings import Settings

import level1_ct.demo as demo
import shared.servers as servers
from level1_ct.service import ServiceSettings
from level1_ct.settings import PipelineSettings
from shared.alert_inbox import InboxSettings


class Started:
    """What `running` would have started: each process's command and environment, and the
    URLs probed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.processes: list[tuple[list[str], dict[str, str]]] = []
        self.probed: list[str] = []
        probes = iter([False, True] * 10)  # nothing there before the start; healthy after

        def popen(command, env, **_):
            self.processes.append((command, env))
            return object()

        def healthy(url, **_):
            self.probed.append(url)
            return next(probes)

        monkeypatch.setattr(servers.subprocess, "Popen", popen)
        monkeypatch.setattr(servers, "is_healthy", healthy)
        monkeypatch.setattr(servers, "_stop", lambda process: None)


@contextmanager
def environment(env: dict[str, str]):
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        yield


def test_running_binds_prefects_processes_to_127_0_0_1_over_what_the_shell_says(
    monkeypatch, tmp_path: Path
):
    monkeypatch.setenv("PREFECT_RUNNER_SERVER_HOST", "localhost")  # e.g. left in a shell
    started = Started(monkeypatch)
    with servers.running(["python", "-m", "x"], "http://127.0.0.1:1/health", tmp_path / "log"):
        pass
    [(_, env)] = started.processes
    with environment(env):
        prefect = Settings()
    assert prefect.runner.server.host == "127.0.0.1"  # `serve`'s web server (default localhost)
    assert prefect.worker.webserver.host == "127.0.0.1"  # a worker's health server (0.0.0.0)
    assert prefect.server.api.host == "127.0.0.1"


@pytest.mark.parametrize("observed", [False, True], ids=["without-prometheus", "with-prometheus"])
def test_every_process_of_level_1s_embedded_start_binds_and_is_probed_on_127_0_0_1(
    monkeypatch, tmp_path: Path, observed: bool, capsys
):
    started = Started(monkeypatch)
    monkeypatch.setattr(
        demo, "Variable", type("NoVariables", (), {"set": staticmethod(lambda *a, **k: None)})
    )
    monkeypatch.setattr(demo, "feature_files", lambda landing: [tmp_path / "day.parquet"])
    monkeypatch.setattr(demo.httpx, "get", lambda url: type("Ok", (), {"json": dict})())
    monkeypatch.setenv("L1_SERVE_HOST", "localhost")  # whatever the shell says
    settings = demo.DemoSettings(var=tmp_path, mlflow_port=5001, prefect_port=4201)
    with demo.started(settings, tmp_path / "level1", [] if observed else ["prometheus"]):
        pass

    commands = {" ".join(command[1:4]): (command, env) for command, env in started.processes}
    expected = ["-m level1_ct.flows.deployments all", "-m level1_ct.service", "-m mlflow server",
                "-m prefect server"]  # fmt: skip
    skipped = "skipped Prometheus and Alertmanager: prometheus not installed (sudo apt-get install"
    assert (skipped in capsys.readouterr().out) is not observed
    if observed:  # the exporter, the inbox, Alertmanager, Prometheus
        expected += ["-m level1_ct.pipeline_metrics", "-m level1_ct.alerts"]
        binaries = [c for c, _ in started.processes if c[0].endswith(("prometheus",
                    "prometheus-alertmanager"))]  # fmt: skip
        assert len(binaries) == 2, started.processes
        for command in binaries:
            assert "--web.listen-address=127.0.0.1:" in " ".join(command), command
        assert "127.0.0.1:" in (tmp_path / "level1/prometheus/prometheus.yml").read_text()
        assert "localhost" not in (tmp_path / "level1/prometheus/prometheus.yml").read_text()
        config = yaml.safe_load((tmp_path / "level1/prometheus/prometheus.yml").read_text())
        assert config["global"]["external_labels"] == {"level": "1"}  # as the stack's
    python = {k: v for k, v in commands.items() if not k.startswith("--")}
    assert sorted(k for k in python if k.startswith("-m")) == sorted(expected)
    for command, env in python.values():
        if "--host" in command:
            assert command[command.index("--host") + 1] == "127.0.0.1", command
        with environment(env):
            prefect = Settings()
            if command[2].startswith("level1_ct."):  # the embedded mode's own processes
                assert PipelineSettings().metrics_host == InboxSettings().host == "127.0.0.1"
        assert prefect.runner.server.host == "127.0.0.1", command
        assert prefect.server.api.host == "127.0.0.1", command
        assert urlsplit(env.get("MLFLOW_TRACKING_URI", "http://127.0.0.1")).hostname == "127.0.0.1"
        assert urlsplit(env.get("PREFECT_API_URL", "http://127.0.0.1")).hostname == "127.0.0.1"
    with environment(commands["-m level1_ct.service"][1]):
        assert ServiceSettings().host == "127.0.0.1"
    runner_env = commands["-m level1_ct.flows.deployments all"][1]
    assert runner_env["PREFECT_RUNNER_SERVER_ENABLE"] == "true"
    # One path from drift to a retrain: Alertmanager's when it runs, Prefect's event if not
    assert runner_env.get("L1_ALERT_ROUTE", "prefect-event") == (
        "alertmanager" if observed else "prefect-event"
    )
    assert len(started.probed) == 2 * len(started.processes)  # before each start, and healthy
    assert {urlsplit(url).hostname for url in started.probed} == {"127.0.0.1"}
