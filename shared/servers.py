"""Start and stop the tool servers of the embedded mode (no Docker) as local processes.

The embedded mode runs the same real servers as the container stacks, with SQLite and
local folders in place of Postgres and volumes. Each server runs in its own process
group, so stopping it also stops the helpers it spawns (MLflow's uvicorn workers).

Everything binds and is probed on 127.0.0.1, never `localhost`: where `localhost` also
resolves to ::1 but IPv6 is off (a container on Docker's default bridge, many CI runners,
WSL), a server told to bind `localhost` fails to start (Prefect's runner web server did).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from dotenv import dotenv_values

from shared.keepalive import SERVER_KEEP_ALIVE_SECONDS
from shared.waiting import wait_until

LOOPBACK = "127.0.0.1"

# The bind addresses of the processes Prefect starts by itself, whose default is not
# 127.0.0.1 (the runner's web server: `localhost`; a worker's health server: 0.0.0.0).
LOOPBACK_ENV = {
    "PREFECT_SERVER_API_HOST": LOOPBACK,
    "PREFECT_RUNNER_SERVER_HOST": LOOPBACK,
    "PREFECT_WORKER_WEBSERVER_HOST": LOOPBACK,
}


class ServerError(RuntimeError):
    """A server did not come up; the message says why and where its log is."""


_HANDED_OUT: set[int] = set()  # every port free_port has returned in this process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this process has
    not handed out before: the ports of one stack must differ, and Docker's port allocator can
    hold a removed stack's port for a while ("Bind for 127.0.0.1:N failed: port is already
    allocated", though nothing listens on it)."""
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def read_dotenv(path: Path) -> dict[str, str]:
    """The settings of a `.env` file, read by python-dotenv as Compose reads it (quotes,
    `export`, comments): how a test or a bench on the host learns the credentials `make env`
    generated. A key without a value is left out."""
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers 200 within `timeout` seconds."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class MlflowServer:
    """An MLflow tracking server on SQLite with proxied artifact storage in a local folder.

    Lighter than MLflow's defaults on purpose (checked on 3.17): one uvicorn worker and no
    job runner take ~0.5 GB instead of ~2.7 GB. The job runner only serves GenAI features.
    Idle connections stay open `keep_alive_seconds` (uvicorn's default, 5 s, races the
    clients' pools: shared/keepalive.py).
    """

    root: Path = field(default=Path("var/mlflow"))
    host: str = LOOPBACK
    port: int = 5000
    keep_alive_seconds: int = SERVER_KEEP_ALIVE_SECONDS

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.url}/health"

    def command(self) -> list[str]:
        root = self.root.resolve()
        return [
            sys.executable, "-m", "mlflow", "server",
            "--host", self.host,
            "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination", str(root / "artifacts"),
            "--workers", "1",
            "--uvicorn-opts", f"--timeout-keep-alive {self.keep_alive_seconds}",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, **LOOPBACK_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class PrefectServer:
    """A Prefect server (API and UI) on SQLite in `home`, the embedded mode's orchestrator.

    Its UI is told where its API is: with any port but 4200 it would otherwise look for the
    API on 127.0.0.1:4200 and show "Can't connect to Server API".
    """

    home: Path = field(default=Path("var/prefect"))
    host: str = LOOPBACK
    port: int = 4200
    keep_alive_seconds: int = SERVER_KEEP_ALIVE_SECONDS

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def health_url(self) -> str:
        return f"{self.api_url}/health"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "prefect", "server", "start",
            "--host", self.host, "--port", str(self.port),
            "--keep-alive-timeout", str(self.keep_alive_seconds),
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """The server's environment; clients need only PREFECT_API_URL = `api_url`."""
        return {
            **os.environ,
            **LOOPBACK_ENV,
            "PREFECT_HOME": str(self.home.resolve()),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        }


def _stop(process: subprocess.Popen) -> None:
    """Stop the whole process group of `process`: TERM, then KILL after 10 s.

    The group, not just the leader: the leader may have exited while a child it spawned
    (MLflow's uvicorn worker) still holds the port.
    """
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the group is gone already
    try:
        process.wait(timeout=10)
        time.sleep(0.2)  # let children act on the TERM too
        os.killpg(process.pid, signal.SIGKILL)  # whatever is still there
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def require_free(ports: dict[int, str]) -> None:
    """Refuse to start (ServerError) when a wanted port (port -> what wants it) is in use."""
    for port, what in ports.items():
        if port_in_use(port):
            raise ServerError(f"port {port}, which the demo wants for {what}, is in use; "
                              "stop what holds it or set DEMO_*_PORT")  # fmt: skip


@contextmanager
def running(
    command: list[str],
    health_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> Iterator[subprocess.Popen]:
    """Run `command` until the block ends, yielding once `health_url` answers 200.

    The process gets `env` (default: this one's environment) with LOOPBACK_ENV over it.
    Refuses to start when something already answers on `health_url` (a port in use), and
    stops only the process it started.
    """
    env = {**(os.environ if env is None else env), **LOOPBACK_ENV}
    if is_healthy(health_url):
        raise ServerError(f"something already answers on {health_url}: stop it or pick a port")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def healthy() -> bool:
        if is_healthy(health_url):
            return True
        if process.poll() is not None:
            raise ServerError(f"{command[2:5]} exited with {process.returncode}; log: {log_path}")
        return False

    try:
        try:
            wait_until(healthy, timeout, f"{health_url} to be healthy", every=0.5)
        except TimeoutError as error:
            raise ServerError(f"{error}; log: {log_path}") from None
        yield process
    finally:
        _stop(process)


@contextmanager
def mlflow_server(server: MlflowServer, log_path: Path | None = None) -> Iterator[MlflowServer]:
    """A running MLflow server for the duration of the block."""
    server.root.mkdir(parents=True, exist_ok=True)
    log_path = log_path or server.root / "server.log"
    with running(server.command(), server.health_url, log_path, env=server.env()):
        yield server


@contextmanager
def prefect_server(server: PrefectServer, log_path: Path | None = None) -> Iterator[PrefectServer]:
    """A running Prefect server for the duration of the block."""
    server.home.mkdir(parents=True, exist_ok=True)
    log_path = log_path or server.home / "server.log"
    with running(server.command(), server.health_url, log_path, env=server.env(), timeout=120):
        yield server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an embedded-mode server in the foreground.")
    parser.add_argument("server", choices=["mlflow", "prefect"])
    parser.add_argument("--port", type=int, help="default: 5000 for MLflow, 4200 for Prefect")
    parser.add_argument("--root", type=Path, help="default: var/mlflow or var/prefect")
    args = parser.parse_args(argv)
    if args.server == "mlflow":
        server = MlflowServer(root=args.root or Path("var/mlflow"), port=args.port or 5000)
        server.root.mkdir(parents=True, exist_ok=True)
        print(f"MLflow UI and tracking server: {server.url}  (store: {server.root}; Ctrl-C stops)")
    else:
        server = PrefectServer(home=args.root or Path("var/prefect"), port=args.port or 4200)
        server.home.mkdir(parents=True, exist_ok=True)
        print(f"Prefect UI and API: {server.api_url}  (home: {server.home}; Ctrl-C stops)")
    os.execve(sys.executable, server.command(), server.env())


if __name__ == "__main__":
    main()
