"""Level 2's pipeline pool on Kubernetes, as far as it goes without a cluster: the worker's
start creates the pool on a real Prefect server from the committed base job template, filled
in with what kustomize rendered (level2_cicd/work_pool.py); the server accepts CD's job
variables for a deployment on it; and Prefect's Kubernetes worker code turns a flow run of that
deployment into the Job it would create, which validates strictly against every Kubernetes
minor and uses exactly the ConfigMap, Secret, claim and image the overlay renders."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import kubernetes_validate
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

from level2_cicd.flows.cd import job_variables
from level2_cicd.names import ENTRYPOINT, STAGING, WORK_POOL
from tests.integration.level1 import prefect
from tests.unit.test_k8s_manifests import minors, of_kind, render

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_pipeline_run_on_the_kubernetes_pool_becomes_a_job_of_the_overlays_objects(tmp_path):
    (tmp_path / "tree").mkdir()
    docs = render("2", tmp_path / "tree")
    worker = of_kind(docs, "Deployment")["worker"]
    notes = worker["spec"]["template"]["metadata"]["annotations"]
    [template] = [m["data"]["base-job-template.json"] for n, m in of_kind(docs, "ConfigMap").items()
                  if n.startswith("base-job-template-")]  # fmt: skip
    (tmp_path / "template.json").write_text(template)

    with prefect(tmp_path) as server:
        # The worker's start (deploy/k8s/level2/worker.yaml), with what its pod is told
        env = {**os.environ, "PREFECT_API_URL": server.api_url, "L2_JOB_NAMESPACE": "mlops-level2",
               "L2_JOB_IMAGE": notes["job-image"], "L2_JOB_CONFIG_MAP": notes["job-config"],
               "L2_JOB_SECRET": notes["job-secret"]}  # fmt: skip
        started = subprocess.run([sys.executable, "-m", "level2_cicd.work_pool",
                                  str(tmp_path / "template.json")],
                                 env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert started.returncode == 0, started.stderr
        # ... twice: a restarted worker updates the pool
        again = subprocess.run(started.args, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            manifest, run_id = asyncio.run(job_of_a_staging_run())

    pool, job = manifest
    assert (pool.type, pool.concurrency_limit) == ("kubernetes", 1)
    # prefect-kubernetes insists on two fields in the pod's spec that Kubernetes does not have
    # there (the API server drops them with a warning: worker.yaml); all else is strict
    pod = job["spec"]["template"]["spec"]
    assert (pod.pop("completions"), pod.pop("parallelism")) == (1, 1)
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (1, 1)
    errors = []
    for minor in minors():
        try:
            kubernetes_validate.validate(job, minor, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{minor}: {error}")
    assert not errors, "\n".join(errors[:5])

    assert job["metadata"]["namespace"] == "mlops-level2"
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["image"] == worker["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CODE_VERSION"]["value"] == SHA and env["PREFECT__FLOW_RUN_ID"]["value"] == run_id
    # The objects it reads are the ones the overlay renders, by their generated names
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e}
    [config] = [s["configMapRef"]["name"] for s in container["envFrom"]]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}  # fmt: skip
    assert secrets == set(of_kind(docs, "Secret")) and config in of_kind(docs, "ConfigMap")
    assert claims == {"level2-data"} <= of_kind(docs, "PersistentVolumeClaim").keys()
    # The pipeline's logins from the Secret, as in the stack's runner
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "L2_GIT_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"], name


async def job_of_a_staging_run():
    """What the Kubernetes worker does with a staging run of CD's deployment: the pool's
    template with the deployment's job variables, prepared for the flow run."""
    async with get_client() as client:
        pool = await client.read_work_pool(WORK_POOL)
        flow_id = await client.create_flow_from_name("ct-training")
        deployment_id = await client.create_deployment(
            flow_id, name=STAGING, work_pool_name=WORK_POOL, entrypoint=ENTRYPOINT,
            job_variables=job_variables(SHA),
        )  # fmt: skip
        # The server checks job variables against the pool's: a wrong one is refused
        with pytest.raises(Exception, match="422|cpu_limit"):
            await client.create_deployment(flow_id, name="wrong", work_pool_name=WORK_POOL,
                                           job_variables={"cpu_limit": {"not": "a quantity"}})  # fmt: skip
        deployment = await client.read_deployment(deployment_id)
        run = await client.create_flow_run_from_deployment(deployment_id)
        flow = await client.read_flow(flow_id)
        config = await KubernetesWorkerJobConfiguration.from_template_and_values(
            pool.base_job_template, {**(deployment.job_variables or {})}, client=client
        )
        config.prepare_for_flow_run(run, deployment=deployment, flow=flow, work_pool=pool,
                                    worker_name="worker")  # fmt: skip
        return (pool, json.loads(json.dumps(config.job_manifest))), str(run.id)
