"""The embedded mode's process manager: it waits for health, stops what it started, and
says why when a server does not come up."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from shared.servers import ServerError, free_port, is_healthy, port_in_use, running


def http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_the_server_is_healthy_inside_the_block_and_gone_after(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with running(http_server(port), url, tmp_path / "log") as process:
        assert is_healthy(url)
    assert process.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_server_that_exits_early_is_reported_with_its_log(tmp_path: Path):
    command = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    url = f"http://127.0.0.1:{free_port()}/"
    with (
        pytest.raises(ServerError, match=r"exited with 3; log: .*log"),
        running(command, url, tmp_path / "log"),
    ):
        pass
    assert "boom" in (tmp_path / "log").read_text()


def test_a_port_already_answering_is_refused_not_reused(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with running(http_server(port), url, tmp_path / "first"):
        second = running(http_server(port), url, tmp_path / "second")
        with pytest.raises(ServerError, match="already answers"), second:
            pass
        assert is_healthy(url)  # the first server was left alone


def test_a_server_that_never_gets_healthy_times_out_and_is_stopped(tmp_path: Path):
    marker = tmp_path / "pid"
    command = [
        sys.executable,
        "-c",
        f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    server = running(command, f"http://127.0.0.1:{free_port()}/", tmp_path / "log", timeout=2)
    with (
        pytest.raises(ServerError, match="waited 2 s for http://127.0.0.1:.* to be healthy"),
        server,
    ):
        pass
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)


def test_children_of_the_server_are_stopped_with_it(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # a shell that starts the real server as a child and waits for it
    command = ["sh", "-c", " ".join(http_server(port))]
    with running(command, url, tmp_path / "log"):
        assert is_healthy(url)
    assert not port_in_use(port)
