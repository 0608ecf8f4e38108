"""Level 2's pipeline pool as a Kubernetes work pool (deploy/k8s/level2/worker.yaml): on a
cluster each staging and production run of the pipeline is a Kubernetes Job, which Prefect's
Kubernetes worker creates from the committed base job template
(deploy/k8s/level2/work-pool/base-job-template.json).

    python -m level2_cicd.work_pool TEMPLATE.json

creates the pool `L2_WORK_POOL` (or updates it) with that template, filled in for where it
runs: the namespace, the image, and the names kustomize gave the ConfigMap and the Secret the
Jobs read (a generated name carries a hash of the content; the worker's pod learns the names
from its annotations, which kustomize keeps up to date: deploy/k8s/level2/names.yaml).
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from pydantic_settings import BaseSettings, SettingsConfigDict

from level2_cicd.settings import get_settings


class JobSettings(BaseSettings):
    """Where the pipeline's Jobs run, and what they read (L2_JOB_*)."""

    model_config = SettingsConfigDict(env_prefix="L2_JOB_", frozen=True)

    namespace: str
    image: str
    config_map: str  # the level's settings (level2-env)
    secret: str  # the logins (mlops-secrets)
    concurrency_limit: int = 1  # one training at a time, as the stack's process worker


def fill(template: dict[str, Any], job: JobSettings) -> dict[str, Any]:
    """The template with the Jobs' namespace and image as defaults, and its ConfigMap and
    Secret references renamed to the ones kustomize generated."""
    filled = copy.deepcopy(template)
    variables = filled["variables"]["properties"]
    variables["namespace"]["default"] = job.namespace
    variables["image"]["default"] = job.image
    pod = filled["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    for container in pod["containers"]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                source["configMapRef"]["name"] = job.config_map
            if "secretRef" in source:
                source["secretRef"]["name"] = job.secret
        for entry in container.get("env", []):
            if "secretKeyRef" in entry.get("valueFrom", {}):
                entry["valueFrom"]["secretKeyRef"]["name"] = job.secret
    return filled


async def create(name: str, template: dict[str, Any], concurrency_limit: int) -> None:
    async with get_client() as client:
        pool = WorkPoolCreate(name=name, type="kubernetes", base_job_template=template,
                              concurrency_limit=concurrency_limit)  # fmt: skip
        await client.create_work_pool(pool, overwrite=True)


def main(argv: list[str] | None = None) -> None:
    [path] = argv if argv is not None else sys.argv[1:]
    job, name = JobSettings(), get_settings().work_pool
    template = fill(json.loads(Path(path).read_text()), job)
    asyncio.run(create(name, template, job.concurrency_limit))
    print(f"work pool {name}: kubernetes, Jobs in {job.namespace} from {job.image}, "
          f"at most {job.concurrency_limit} at a time")  # fmt: skip


if __name__ == "__main__":
    main()
