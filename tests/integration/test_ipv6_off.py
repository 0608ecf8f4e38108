"""The embedded mode where `localhost` resolves to ::1 too but IPv6 is off (a container on
Docker's default bridge, many CI runners, WSL): level 1's start (MLflow, Prefect, the runner,
the service) comes up healthy on 127.0.0.1. Prefect's runner web server used to bind
`localhost` there and never got healthy.

The test makes that machine: a network namespace whose loopback has IPv6 disabled, and a
mount namespace whose /etc/hosts maps localhost to 127.0.0.1 and ::1 as Debian's does. It
needs root (or user namespaces) and util-linux's `unshare` and `mount`; without them it
skips, except in CI (CI=true), where it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"

# Run in the namespaces: loopback up, IPv6 off on it; then check that this is the faulty
# machine before starting level 1 the way `make demo` does.
INSIDE = textwrap.dedent(
    """
    import fcntl, socket, struct, sys
    from pathlib import Path

    with socket.socket() as s:  # `ip link set lo up`, without needing iproute2
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0))[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
    knob = Path("/proc/sys/net/ipv6/conf/lo/disable_ipv6")
    if knob.exists():
        knob.write_text("1")

    resolved = {a[4][0] for a in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}
    assert "::1" in resolved, f"localhost resolves to {resolved} only"
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
        sys.exit("::1 can be bound: not the machine this test needs")
    except OSError:
        print("::1 cannot be bound; localhost resolves to", sorted(resolved), flush=True)

    from level1_ct.demo import DemoSettings, started
    from shared.simulator import simulate
    from tests.conftest import SMALL

    root = Path(sys.argv[1])
    simulate(root / "landing", SMALL)
    settings = DemoSettings(var=root.parent, n_iter=3)
    with started(settings, root, absent=["prometheus"]) as (mlflow, url, _):
        print("LEVEL 1 STARTED", mlflow.url, url, flush=True)
    """
)


def namespaces_or_skip() -> None:
    missing = [tool for tool in ("unshare", "mount") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not found (util-linux)"
    else:
        probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True)
        reason = f"no network namespace here: unshare -n -m: {probe.stderr.strip()}"
        if probe.returncode == 0:
            return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def test_level1_starts_healthy_where_localhost_is_ipv6_but_ipv6_is_off(tmp_path: Path):
    namespaces_or_skip()
    hosts = tmp_path / "hosts"
    hosts.write_text(DEBIAN_HOSTS)
    script = tmp_path / "inside.py"
    script.write_text(INSIDE)
    command = ["unshare", "-n", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
               str(hosts), sys.executable, str(script), str(tmp_path / "level1")]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=400)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "::1 cannot be bound" in output
    assert "LEVEL 1 STARTED http://127.0.0.1:5000 http://127.0.0.1:8001" in output
