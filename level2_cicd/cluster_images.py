"""CI's images on a cluster, where there is no Docker socket: buildah in a Job.

The stack's runner builds a commit's images through the host's Docker socket. A cluster gives
no socket (and whoever holds one is root on the node), so there (L2_IMAGE_BUILDER=kubernetes,
deploy/k8s/level2/runner.yaml) CI's two image steps are Jobs in the runner's namespace:

- `images-<sha>-…`: buildah (mlops-levels/builder, Debian's package; its script is
  infra/docker/builder/build-commit.sh) builds the commit's images from the checkout CI made
  on the PVC `level2-data`, with infra/docker/commit.Dockerfile on mlops-levels/python-env, and
  pushes them to the cluster's registry (deploy/k8s/level2/images.yaml). The pod has a user
  namespace of its own (`hostUsers: false`, Kubernetes 1.33 and newer): buildah is root in
  it, so a layer keeps its files' owners, and an unprivileged user on the node; it keeps only
  capabilities of the baseline Pod Security Standard and the runtime's seccomp profile, and
  needs no mount (vfs). A cluster that ignores `hostUsers` gets no build (run_job).
- `contract-<sha>-…`: the commit's serving image, pulled by the node from that registry,
  starts and answers the API contract's probe (the one CI runs in a container on the stack).

The runner's Role (deploy/k8s/level2/images.yaml) lets it create and delete Jobs and read
their pods' logs, in its namespace. A pushed commit's tests run in the runner's pod and can use
that token too: what keeps them from the node is the namespace's Pod Security Standard
(baseline, enforced), which refuses privileged pods, the node's paths and namespaces.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from level2_cicd.names import IMAGES
from level2_cicd.report import StepFailed
from level2_cicd.settings import CicdSettings

# What buildah needs to write layers as their owners say, and nothing more: capabilities of
# Kubernetes' baseline Pod Security Standard (no SYS_ADMIN, no mount)
BUILDER_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID",
                        "SETFCAP", "SYS_CHROOT"]  # fmt: skip
BUILDER_STORAGE = "/var/tmp/buildah"  # infra/docker/builder/storage.conf
CONTEXT = "/workspace"
# The runner's pods (deploy/k8s/level2/runner.yaml): the build reads the checkout on the
# runner's ReadWriteOnce claim, so it runs on the runner's node
RUNNER = {"app.kubernetes.io/name": "runner"}
LABELS = {"app.kubernetes.io/part-of": "mlops-levels", "app.kubernetes.io/component": "ci"}


class BuildJobSettings(BaseSettings):
    """Where CI's image Jobs run and what they use (L2_BUILD_*; the runner's Deployment sets
    them from its namespace and from annotations kustomize keeps up to date)."""

    model_config = SettingsConfigDict(env_prefix="L2_BUILD_", frozen=True)

    namespace: str
    builder_image: str  # mlops-levels/builder:<version>
    base_image: str  # mlops-levels/python-env:<version>, as pushed to the registry
    checkouts_claim: str = "level2-data"  # the PVC CI checks commits out to ...
    checkouts_mount: Path = Path("/data")  # ... mounted here in the runner
    job_ttl_seconds: int = 3600


def image_refs(sha: str, registry: str, settings: CicdSettings) -> dict[str, str]:
    """The commit's images by Dockerfile target, at `registry`."""
    return {target: settings.commit_image(target, sha, registry) for target in IMAGES}


def _job(kind: str, sha: str, pod: dict[str, Any], deadline: int, ttl: int) -> dict[str, Any]:
    labels = LABELS | {"mlops-levels/step": kind, "mlops-levels/commit": sha[:12]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": f"{kind}-{sha[:12]}-", "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a failed build is CI's red step, not a retry
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": ttl,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, **pod},
            },
        },
    }


def build_job(sha: str, checkout: Path, settings: CicdSettings, job: BuildJobSettings) -> dict:
    """The Job that builds the commit's images and pushes them to the registry."""
    refs = image_refs(sha, settings.image_registry, settings)
    base = f"{settings.image_registry}/{job.base_image}"
    pod = {
        "hostUsers": False,  # root in the pod is an unprivileged user on the node
        "affinity": {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": RUNNER},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        },  # fmt: skip
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "buildah",
                "image": job.builder_image,
                "command": ["build-commit.sh"],
                "args": [CONTEXT, sha, base, *(f"{target}={ref}" for target, ref in refs.items())],
                "securityContext": {
                    "runAsUser": 0,
                    "runAsGroup": 0,
                    "runAsNonRoot": False,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": BUILDER_CAPABILITIES},
                },
                # vfs keeps a whole copy of the ~2 GB base per layer: about 15 GB at the peak
                "resources": {
                    "requests": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "16Gi"},
                    "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "24Gi"},
                },
                "volumeMounts": [
                    {
                        "name": "checkout",
                        "mountPath": CONTEXT,
                        "readOnly": True,
                        "subPath": str(checkout.relative_to(job.checkouts_mount)),
                    },
                    {"name": "storage", "mountPath": BUILDER_STORAGE},
                ],
            }
        ],
        "volumes": [
            {
                "name": "checkout",
                "persistentVolumeClaim": {"claimName": job.checkouts_claim, "readOnly": True},
            },
            {"name": "storage", "emptyDir": {"sizeLimit": "22Gi"}},  # below the pod's limit
        ],
    }
    return _job("images", sha, pod, settings.step_timeout_seconds, job.job_ttl_seconds)


# The contract probe in a pod of its own: the service starts in the background and the probe
# (level2_cicd/flows/ci.py's PROBE, in $PROBE) is tried until the service answers
CONTRACT_SCRIPT = (
    "python -m level1_ct.service >/tmp/service.log 2>&1 & "
    'for i in $(seq 90); do python -c "$PROBE" 2>/dev/null && exit 0; sleep 1; done; '
    "tail -n 50 /tmp/service.log; exit 1"
)


def contract_job(sha: str, probe: str, settings: CicdSettings, job: BuildJobSettings) -> dict:
    """The Job that starts the commit's serving image, as the nodes pull it, and probes it."""
    image = image_refs(sha, settings.image_pull_registry or settings.image_registry,
                       settings)["serving"]  # fmt: skip
    pod = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "contract",
                "image": image,
                "command": ["sh", "-c", CONTRACT_SCRIPT],
                "env": [
                    {"name": "PROBE", "value": probe},
                    # no registry, no database: health says why, the contract still holds
                    {"name": "MLFLOW_TRACKING_URI", "value": "http://127.0.0.1:9"},
                    {"name": "PREDICTION_STORE_URL", "value": "sqlite:////tmp/predictions.db"},
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    return _job("contract", sha, pod, 300, job.job_ttl_seconds)


# A pod that waits for one of these will not start by itself: fail the step at once
STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
         "CreateContainerError"}  # fmt: skip


def run_job(body: dict, namespace: str, timeout: float) -> str:
    """Create the Job in the cluster the runner runs in, wait until it succeeds or fails, and
    return its pod's log; a failed, stuck or overdue Job raises StepFailed with the end of
    that log and why."""
    from kubernetes_asyncio import config

    configuration = config.load_incluster_config  # the runner's ServiceAccount (images.yaml)
    return asyncio.run(_run_job(body, namespace, timeout, configuration))


async def _run_job(
    body: dict, namespace: str, timeout: float, configure, poll_seconds: float = 5.0
) -> str:
    """`configure(configuration)` points the client at the API server (in-cluster, or a test's)."""
    from kubernetes_asyncio import client

    configuration = client.Configuration()
    configure(client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        job = await batch.create_namespaced_job(namespace, body)
        name = job.metadata.name
        wants_own_users = body["spec"]["template"]["spec"].get("hostUsers") is False
        if wants_own_users and job.spec.template.spec.host_users is not False:
            # An API server without user namespaces drops the field: the build would run as
            # the node's root. Refuse, and take the Job away before it starts.
            await batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
            raise StepFailed(
                f"Job {name}: this cluster does not give pods a user namespace (hostUsers is "
                "ignored: Kubernetes 1.33 or newer, or the UserNamespacesSupport feature gate)"
            )
        deadline = time.monotonic() + timeout
        why = ""
        while True:
            status = (await batch.read_namespaced_job_status(name, namespace)).status
            if status.succeeded or status.failed:
                why = "; ".join(c.message or c.reason for c in status.conditions or []
                                if c.type in ("Failed", "FailureTarget") and c.status == "True")  # fmt: skip
                break
            pods = await core.list_namespaced_pod(namespace, label_selector=f"job-name={name}")
            waiting = [
                f"{pod.metadata.name}: {c.state.waiting.reason} ({c.state.waiting.message})"
                for pod in pods.items for c in pod.status.container_statuses or []
                if c.state and c.state.waiting and c.state.waiting.reason in STUCK
            ]  # fmt: skip
            if waiting:
                why = "; ".join(waiting)
                break
            if time.monotonic() > deadline:
                why = f"did not finish in {timeout:.0f} s"
                break
            await asyncio.sleep(poll_seconds)
        pods = await core.list_namespaced_pod(namespace, label_selector=f"job-name={name}")
        logs = []
        for pod in pods.items:
            try:
                # the log as text (preloaded, the client would parse a JSON line into a dict)
                response = await core.read_namespaced_pod_log(
                    pod.metadata.name, namespace, tail_lines=200, _preload_content=False
                )
                logs.append(await response.text())
            except client.ApiException as error:  # not started: its image not pulled, say
                logs.append(f"{pod.metadata.name}: no log ({error.status} {error.body})")
        log = "\n".join(logs)
        if not status.succeeded:
            raise StepFailed(f"Job {name} failed: {why or 'see its log'}\n{log[-2000:]}")
        return log
