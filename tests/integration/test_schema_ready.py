"""The wait of the MLflow and Prefect servers' init containers on Kubernetes
(shared/schema_ready.py), against databases the tools' own migration commands made: not
ready on an empty database nor one a migration behind, ready once `mlflow db upgrade` or
`prefect server database upgrade` ran. SQLite here; Postgres, with the manifests' commands,
in tests/docker/test_k8s_postgres.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import schema_ready

BIN = Path(sys.executable).parent


def tool(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def test_mlflow_is_ready_only_once_its_migration_ran(tmp_path):
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "out-of-date database schema" in schema_ready.mlflow_pending(url)
    with pytest.raises(SystemExit, match="no migrated schema after 1 s"):
        schema_ready.wait("mlflow", url, timeout=1, every=0.5)
    tool("mlflow", "db", "upgrade", url)
    assert schema_ready.mlflow_pending(url) is None
    schema_ready.wait("mlflow", url, timeout=1)


def test_prefect_is_ready_only_at_the_head_of_its_migrations(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
    env = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": url, "PREFECT_HOME": str(tmp_path)}
    assert schema_ready.prefect_pending(url) == "no schema yet"
    tool("prefect", "server", "database", "upgrade", "--yes", env=env)
    assert schema_ready.prefect_pending(url) is None
    tool("prefect", "server", "database", "downgrade", "--yes", "--revision", "-1", env=env)
    assert "the code's at" in schema_ready.prefect_pending(url)  # one migration behind
    tool("prefect", "server", "database", "upgrade", "--yes", env=env)
    schema_ready.wait("prefect", url, timeout=1)
