"""The HTTP contract is the OpenAPI document, exactly: schemathesis fuzzes each service's live
`/openapi.json` (level 0's service, level 1's, level 2's production with its admin route, with
and without the key) with every check it has: no server error, every status documented, every
response as documented, schema-valid requests accepted, invalid ones refused.

A fixed seed and a bounded number of examples per operation keep it reproducible and cheap.
The figures (requests generated, failures) are printed for the closing note of a change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import model_file
from shared.servers import MlflowServer, free_port, mlflow_server, running
from tests.integration.level1 import register_champion, service_process

ROOT = Path(__file__).resolve().parents[2]
SEED = 42
MAX_EXAMPLES = 20  # per operation and phase: about a minute per service on 2 cores
API_KEY = "contract-test-key"


def fuzz(url: str, report: Path, *headers: str) -> str:
    """Run schemathesis against `url`'s live document; fail with its report unless it found
    nothing. Returns its summary line."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1", "--request-timeout", "30",
        "--report", "junit", "--report-junit-path", str(report),
        *[arg for header in headers for arg in ("-H", header)],
    ]  # fmt: skip
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration.contract_hooks",
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }
    # Run in the test's folder: schemathesis keeps the crashes it found there (.schemathesis/)
    # and would replay them first next time; each run starts clean, from the seed alone.
    result = subprocess.run(
        command, cwd=report.parent, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and int(generated[1]) >= 50, output[-3000:]  # it really ran
    summary = f"{url}: {generated[0]}, 0 failures ({' '.join(headers) or 'no key'})"
    print(summary)
    return summary


@pytest.fixture(scope="module")
def level0_url(trained, tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("contract-level0")
    model_file.save(trained.pipeline, {"name": "churn", "version": "v-contract"}, tmp / "model")
    port = free_port()
    env = {**os.environ, "L0_SERVE_MODEL_DIR": str(tmp / "model"), "L0_SERVE_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "level0_manual.service"]
    with running(command, f"{url}/health", tmp / "service.log", env=env, timeout=60):
        yield url


@pytest.fixture(scope="module")
def registry_with_champion(trained, tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("contract-mlflow")
    with mlflow_server(MlflowServer(root=tmp / "mlflow", port=free_port())) as mlflow:
        register_champion(mlflow.url, trained.pipeline)
        yield mlflow.url


def test_level0_service_meets_its_openapi_document(level0_url, tmp_path):
    fuzz(level0_url, tmp_path / "junit.xml")


def test_level1_service_meets_its_openapi_document(registry_with_champion, tmp_path):
    with service_process(
        "level1_ct.service", "L1_SERVE_", tmp_path, registry_with_champion, {}
    ) as url:
        fuzz(url, tmp_path / "junit.xml")


def test_level2_production_meets_its_openapi_document_with_and_without_the_key(
    registry_with_champion, tmp_path
):
    settings = {"api_key": API_KEY}
    with service_process(
        "level2_cicd.service", "L2_SERVE_", tmp_path, registry_with_champion, settings
    ) as url:
        fuzz(url, tmp_path / "without-key.xml")
        fuzz(url, tmp_path / "with-key.xml", f"X-API-Key: {API_KEY}")
