"""Level 0 end to end in the embedded mode, through the commands a learner types:
`make demo` with its real MLflow server and service, and the exploration notebook."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from shared import model_file
from shared.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, list[int]]:
    var = tmp_path_factory.mktemp("var")
    ports = [free_port(), free_port()]
    env = {
        **os.environ,
        "DEMO_LEVELS": "0",
        "DEMO_VAR": str(var),
        "DEMO_DAYS": "8",
        "DEMO_N_ITER": "2",
        "DEMO_MLFLOW_PORT": str(ports[0]),
        "DEMO_SERVICE_PORT": str(ports[1]),
    }
    result = subprocess.run(
        ["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, var, ports


def test_demo_serves_real_predictions_from_the_handed_off_model(demo):
    result, var, _ = demo
    out = result.stdout
    healthy = re.search(r"healthy: \{'status': 'ok', 'model_version': '(\w+)'\}", out)
    assert healthy, out
    assert f"model churn version {healthy.group(1)}:" in out
    rows = re.findall(
        r"^\s+\d{8}-\d{5}\s+\d+\s+\d+\s+\d+\s+\d+\s+(0\.\d{3})\s+(yes|no)$", out, re.M
    )
    assert len(rows) == 5
    assert (var / "level0" / "serving" / "model.skops").is_file()


def test_demo_shows_the_manual_hand_off_and_a_refused_request(demo):
    out = demo[0].stdout
    assert "MANUAL HAND-OFF (level 0)" in out
    assert "POST /predict with age='twenty' -> 422" in out
    assert "'loc': ['body', 'record', 'age']" in out


def test_demo_leaves_the_run_in_the_mlflow_store_for_the_ui(demo):
    _, var, _ = demo
    with sqlite3.connect(var / "mlflow" / "mlflow.db") as db:
        runs = db.execute(
            "select r.run_uuid from runs r join experiments e using (experiment_id) "
            "where e.name = 'level0-manual'"
        ).fetchall()
        metrics = {m for (m,) in db.execute("select key from metrics")}
    assert len(runs) == 1
    assert {"roc_auc", "f1", "baseline/roc_auc"} <= metrics
    assert list((var / "mlflow" / "artifacts").rglob("MLmodel"))


def test_demo_stops_the_servers_it_started(demo):
    for port in demo[2]:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_exploration_notebook_runs_top_to_bottom(landing, trained, tmp_path: Path):
    model_file.save(
        trained.pipeline, {"name": "churn", "version": "nb", "data_files": ["x"]}, tmp_path
    )
    notebook = nbformat.read(ROOT / "level0_manual" / "explore.ipynb", as_version=4)
    os.environ["L0_LANDING"], os.environ["L0_EXPORT_DIR"] = str(landing), str(tmp_path)
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3",
            resources={"metadata": {"path": str(ROOT / "level0_manual")}},
        ).execute()  # fmt: skip
    finally:
        del os.environ["L0_LANDING"], os.environ["L0_EXPORT_DIR"]
    outputs = "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
    )  # fmt: skip
    assert "feature batches in" in outputs
    assert "roc_auc" in outputs and "baseline" in outputs
    assert "exported model nb" in outputs  # section 5 scored the exported model by day
