"""`make demo` for level 2, as a learner runs it: a push goes through CI and CD by itself, and
production answers with the new version while live traffic sees no error; Prometheus, where
Debian's packages are installed, scrapes it all with the stack's rules (level 1's and level 2's)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from compare import routing
from shared import prometheus
from shared.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_level2_demo_delivers_a_push_to_production(tmp_path):
    env = {
        **os.environ,
        "DEMO_LEVELS": "2",
        "DEMO_VAR": str(tmp_path),
        "DEMO_N_ITER": "3",
        "DEMO_MLFLOW_PORT": str(free_port()),
        "DEMO_PREFECT_PORT": str(free_port()),
        "DEMO_LEVEL2_SERVICE_PORT": str(free_port()),
        "DEMO_ROLLOUT_WINDOW_SECONDS": "15",
        "DEMO_PROMETHEUS_PORT": str(free_port()),
        "DEMO_ALERTMANAGER_PORT": str(free_port()),
        "DEMO_INBOX_PORT": str(free_port()),
        "DEMO_METRICS_PORT": str(free_port()),
    }
    result = subprocess.run(
        ["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert re.search(r"CI/CD started for [0-9a-f]{12}", out)  # the remote's hook, via git push
    assert re.search(r"ci-[0-9a-f]{12}: Completed: CI green for [0-9a-f]{12} \(images skipped: "
                     r"L2_BUILD_IMAGES=never\); CD started", out)  # fmt: skip
    assert re.search(
        r"cd-[0-9a-f]{12}: Completed: delivered [0-9a-f]{12}: version 2 in production", out
    )
    assert re.search(r"production moved: version 1 -> 2, \d+ s after the push", out)
    served = re.findall(r"POST /predict -> 200: model churn version (\d+)", out)
    assert served == ["1", "2"]
    assert re.search(r"live traffic: [1-9]\d* requests, 0 failed", out)
    if not prometheus.missing():
        assert "targets: alerts up, pipeline up, production up" in out  # the stack's jobs
        assert "churn_champion_info: version 2" in out
        rules = sum(len(routing.rules_of(path)) for path in routing.RULE_FILES)  # both levels'
        assert f"alert rules loaded: {rules}; firing: none" in out
        assert (tmp_path / "level2" / "alerts.db").exists()
    else:
        assert os.environ.get("CI") is None, f"CI=true: {prometheus.INSTALL}"
        assert f"skipped: Prometheus is not installed ({prometheus.INSTALL})" in out
