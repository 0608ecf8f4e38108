"""Is a tool server's database at the schema its code expects? On Kubernetes the MLflow and
Prefect servers do not migrate their databases as they start (several replicas, or a rolling
update, would race); a Job per tool does (deploy/k8s: `mlflow db upgrade`, `prefect server
database upgrade`), and each server's init container waits here until that Job is done:

    python -m shared.schema_ready mlflow  [URL] [--timeout 900]
    python -m shared.schema_ready prefect [URL] [--timeout 900]

Both tools keep their schema's version in Alembic's table; "ready" is that version being the
head of the migrations the installed tool ships (MLflow's own check; Prefect's migrations for
the URL's dialect). The URL is the one the tool's server uses (Prefect's async driver is
swapped for a synchronous one to read the version).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import sqlalchemy as sa

Check = Callable[[str], "str | None"]  # URL -> why not ready, or None


def mlflow_pending(url: str) -> str | None:
    from mlflow.exceptions import MlflowException
    from mlflow.store.db.utils import _verify_schema, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(url)
    try:
        _verify_schema(engine)  # MLflow's own comparison of the table with its head
    except MlflowException as error:
        return str(error).splitlines()[0]
    finally:
        engine.dispose()
    return None


def prefect_pending(url: str) -> str | None:
    from alembic.script import ScriptDirectory
    from prefect.server.database.alembic_commands import alembic_config
    from prefect.server.database.orm_models import (
        AioSqliteORMConfiguration,
        AsyncPostgresORMConfiguration,
    )

    sync_url = sa.engine.make_url(url)
    postgres = sync_url.get_backend_name() == "postgresql"
    orm = AsyncPostgresORMConfiguration() if postgres else AioSqliteORMConfiguration()
    config = alembic_config()
    config.set_main_option("version_locations", str(orm.versions_dir))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    sync_url = sync_url.set(drivername="postgresql+psycopg2" if postgres else "sqlite")
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return "no schema yet"
            current = {row[0] for row in connection.execute(sa.text(
                "SELECT version_num FROM alembic_version"))}  # fmt: skip
    finally:
        engine.dispose()
    return (
        None if current == heads else f"schema at {sorted(current)}, the code's at {sorted(heads)}"
    )


CHECKS: dict[str, Check] = {"mlflow": mlflow_pending, "prefect": prefect_pending}
URL_VARIABLES = {"mlflow": "MLFLOW_BACKEND_STORE_URI",
                 "prefect": "PREFECT_API_DATABASE_CONNECTION_URL"}  # fmt: skip


def wait(tool: str, url: str, timeout: float, every: float = 3.0) -> None:
    """Return once the schema is current; SystemExit after `timeout` seconds."""
    deadline, said = time.monotonic() + timeout, None
    while True:
        try:
            why = CHECKS[tool](url)
        except sa.exc.OperationalError as error:  # the database is not up yet
            why = f"database unreachable: {str(error).splitlines()[0]}"
        if why is None:
            print(f"{tool}: the database's schema is current", flush=True)
            return
        if why != said:
            print(f"{tool}: waiting for its migration Job ({why})", flush=True)
            said = why
        if time.monotonic() > deadline:
            raise SystemExit(f"{tool}: no migrated schema after {timeout:.0f} s: {why}")
        time.sleep(every)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=sorted(CHECKS))
    parser.add_argument("url", nargs="?", help="the server's database URL (default: its variable)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds")
    parser.add_argument("--every", type=float, default=3, help="seconds between looks")
    options = parser.parse_args(argv)
    url = options.url or os.environ.get(URL_VARIABLES[options.tool])
    if not url:
        parser.error(f"no URL: pass it or set {URL_VARIABLES[options.tool]}")
    wait(options.tool, url, options.timeout, options.every)


if __name__ == "__main__":
    main()
