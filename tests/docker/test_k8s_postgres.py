"""The Postgres image as Kubernetes runs it (deploy/k8s/base/postgres.yaml): its user, its
environment (PGDATA a folder below the volume's root, which a claim's root cannot be), the init
scripts mounted from their ConfigMap, the socket folder an emptyDir. It initialises the
databases every level needs and answers the manifest's readiness check. Then the migration
Jobs' commands, and the servers' init containers that wait for them, run against it as the
manifests write them. No cluster can be had here (deploy/k8s/README.md): the containers are
what can be run for real."""

from __future__ import annotations

import subprocess
import time
import uuid

import yaml

from tests.docker.conftest import ROOT, run

MANIFEST = ROOT / "deploy/k8s/base/postgres.yaml"
# Each server: its Deployment's manifest, and its migration Job's
SERVERS = {
    "mlflow": ("deploy/k8s/base/mlflow.yaml", "deploy/k8s/base/mlflow-migrate.yaml"),
    "prefect": ("deploy/k8s/components/prefect/prefect.yaml",
                "deploy/k8s/components/prefect/prefect-migrate.yaml"),
}  # fmt: skip


def test_postgres_initialises_below_the_volumes_root_as_the_statefulset_runs_it(images):
    statefulset = next(yaml.safe_load_all(MANIFEST.read_text()))
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["PGDATA"].startswith("/var/lib/postgresql/data/")  # below the claim's root
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['fsGroup']}"
    ready = container["readinessProbe"]["exec"]["command"]
    name, volume = f"k8s-postgres-{uuid.uuid4().hex[:8]}", f"k8s-pgdata-{uuid.uuid4().hex[:8]}"
    network = f"k8s-net-{uuid.uuid4().hex[:8]}"
    run(["docker", "volume", "create", volume])
    run(["docker", "network", "create", network])
    try:
        # What the pod's fsGroup does to the claim: its group owns it, with the setgid bit
        group = pod["securityContext"]["fsGroup"]
        run(["docker", "run", "--rm", "--user", "0", "-v", f"{volume}:/claim", "--entrypoint",
             "sh", "mlops-levels/postgres:15", "-c", f"chgrp {group} /claim && chmod 2770 /claim"])  # fmt: skip
        run([
            "docker", "run", "-d", "--name", name, "--user", user,
            "--network", network, "--network-alias", "postgres",  # the Service's name
            "-e", "POSTGRES_USER=mlops", "-e", "POSTGRES_PASSWORD=not-a-secret",
            *[a for key, value in env.items() for a in ("-e", f"{key}={value}")],
            "-v", f"{volume}:/var/lib/postgresql/data",
            "-v", f"{ROOT / 'infra/compose/postgres-init'}:/docker-entrypoint-initdb.d:ro",
            "-v", "/var/run/postgresql",  # the emptyDir: a fresh folder the user can write
            "mlops-levels/postgres:15",
        ])  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run(["docker", "exec", name, *ready], capture_output=True, text=True)
            if probe.returncode == 0:
                break
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
            assert time.monotonic() < deadline, f"never ready:\n{logs.stdout}{logs.stderr}"
            time.sleep(1)
        databases = run(["docker", "exec", name, "psql", "-U", "mlops", "-d", "postgres", "-Atc",
                         "SELECT datname FROM pg_database"]).split()  # fmt: skip
        assert {"mlflow", "prefect", "predictions"} <= set(databases)
        listing = run(["docker", "exec", name, "ls", "-a", "/var/lib/postgresql/data"]).split()
        assert "pgdata" in listing and "PG_VERSION" not in listing  # the cluster is below
        migrations_then_servers(network)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


def migrations_then_servers(network: str) -> None:
    """Before its Job, each server's init container waits (and gives up after its timeout,
    here 5 s); the Job's command migrates the empty database; then the wait ends at once."""

    def in_pod(container: dict, *extra: str) -> subprocess.CompletedProcess:
        env = [a for e in container["env"] for a in ("-e", f"{e['name']}={e.get('value', '')}")
               if "value" in e]  # fmt: skip
        logins = ["-e", "POSTGRES_USER=mlops", "-e", "POSTGRES_PASSWORD=not-a-secret"]
        script = " ".join([container["command"][-1], *extra])
        return subprocess.run(["docker", "run", "--rm", "--network", network, "--user", "10001",
                               *logins, *env, "mlops-levels/python:latest", "sh", "-c", script],
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    for server, (deployment, job) in SERVERS.items():
        pod = next(yaml.safe_load_all((ROOT / deployment).read_text()))["spec"]["template"]
        [wait] = pod["spec"]["initContainers"]
        [migrate] = next(yaml.safe_load_all((ROOT / job).read_text()))["spec"]["template"][
            "spec"]["containers"]  # fmt: skip
        before = in_pod(wait, "--timeout", "5", "--every", "1")
        assert before.returncode != 0 and "no migrated schema" in before.stderr, (server, before)
        migrated = in_pod(migrate)
        assert migrated.returncode == 0, (server, migrated.stdout[-2000:], migrated.stderr[-3000:])
        after = in_pod(wait, "--timeout", "5")
        assert after.returncode == 0 and "schema is current" in after.stdout, (server, after)
