"""CI's images on a cluster (level2_cicd/cluster_images.py), read without a cluster: what the
build and contract Jobs ask of their node, and that CI's image steps hand them to Kubernetes
when L2_IMAGE_BUILDER=kubernetes. The build itself runs for real in a user namespace in the
container suite (tests/docker/test_cluster_image_build.py); the rendered manifests' side is
in tests/unit/test_k8s_manifests.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.logging import disable_run_logger

from level2_cicd import cluster_images
from level2_cicd.flows import ci
from level2_cicd.names import IMAGES
from level2_cicd.report import StepFailed
from level2_cicd.settings import CicdSettings

SHA = "0123456789abcdef0123456789abcdef01234567"
# Kubernetes' baseline Pod Security Standard: what a container may add, and no more
BASELINE = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
            "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}  # fmt: skip


@pytest.fixture
def job() -> cluster_images.BuildJobSettings:
    return cluster_images.BuildJobSettings(namespace="mlops-level2",
                                           builder_image="mlops-levels/builder:0.1.0",
                                           base_image="mlops-levels/python-env:0.1.0")  # fmt: skip


SETTINGS = CicdSettings(image_builder="kubernetes", image_registry="registry:5000",
                        image_pull_registry="localhost:30500")  # fmt: skip


def test_the_build_job_is_root_only_in_a_user_namespace_of_its_own(job):
    body = cluster_images.build_job(SHA, Path("/data/ci") / SHA[:12], SETTINGS, job)
    pod = body["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = container["securityContext"]
    # root in the pod (a layer keeps its files' owners), an unprivileged user on the node
    assert pod["hostUsers"] is False and security["runAsUser"] == 0
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) <= BASELINE
    assert security["allowPrivilegeEscalation"] is False and "privileged" not in security
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False  # the build needs no API
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert not [v for v in volumes.values() if "hostPath" in v]  # no socket, nothing of the node
    # The checkout CI made, read-only; the images' layers in scratch space
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["checkout"] == {"name": "checkout", "mountPath": "/workspace", "readOnly": True,
                                  "subPath": f"ci/{SHA[:12]}"}  # fmt: skip
    assert volumes["checkout"]["persistentVolumeClaim"]["claimName"] == "level2-data"
    assert "emptyDir" in volumes["storage"]
    assert body["spec"]["backoffLimit"] == 0  # a failed build is a red step, not a retry


def test_the_build_job_builds_every_image_of_the_commit_on_the_base_from_the_registry(job):
    body = cluster_images.build_job(SHA, Path("/data/ci") / SHA[:12], SETTINGS, job)
    [container] = body["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "mlops-levels/builder:0.1.0"
    assert container["command"] == ["build-commit.sh"]
    context, sha, base, *targets = container["args"]
    assert (context, sha) == ("/workspace", SHA)
    assert base == "registry:5000/mlops-levels/python-env:0.1.0"
    assert targets == [f"{target}=registry:5000/mlops-levels/{name}:{SHA[:12]}"
                       for target, name in IMAGES.items()]  # fmt: skip
    assert body["metadata"]["generateName"] == f"images-{SHA[:12]}-"  # a rerun is a new Job


def test_the_contract_job_runs_the_serving_image_as_the_nodes_pull_it(job):
    body = cluster_images.contract_job(SHA, ci.PROBE, SETTINGS, job)
    pod = body["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == f"localhost:30500/mlops-levels/level2-serving:{SHA[:12]}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "PROBE", "value": ci.PROBE} in container["env"]
    # One registry for both where the nodes reach it by the same name
    single = CicdSettings(image_builder="kubernetes", image_registry="registry.example:443")
    body = cluster_images.contract_job(SHA, ci.PROBE, single, job)
    image = body["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("registry.example:443/")


def test_cis_image_steps_run_as_jobs_on_a_cluster(job, monkeypatch):
    ran: list[dict] = []
    good = '{"health": "no_model", "status": 422, "body": ' + (
        '"{\\"detail\\": [{\\"type\\": \\"int_type\\", \\"loc\\": [\\"body\\", 0, \\"age\\"]}]}"}'
    )

    def run_job(body, namespace, timeout):
        ran.append(body)
        assert namespace == "mlops-level2"
        return "pushed\n" if body["metadata"]["generateName"].startswith("images") else good

    monkeypatch.setattr(cluster_images, "run_job", run_job)
    monkeypatch.setattr(cluster_images, "BuildJobSettings", lambda: job)
    with disable_run_logger():
        tags = ci.build_images.fn(Path("/data/ci") / SHA[:12], SHA, SETTINGS)
    assert tags == [f"registry:5000/mlops-levels/{name}:{SHA[:12]}" for name in IMAGES.values()]
    answer = ci.smoke_test_serving.fn(tags[-1], SHA, SETTINGS)
    assert "422 naming its field" in answer
    assert [b["metadata"]["generateName"][:8] for b in ran] == ["images-0", "contract"]
    # A serving image that breaks the contract fails the step
    good = good.replace("422", "200")
    with pytest.raises(StepFailed, match="malformed request got 200"):
        ci.smoke_test_serving.fn(tags[-1], SHA, SETTINGS)


def test_a_cluster_builds_images_without_a_docker_engine(monkeypatch):
    """L2_BUILD_IMAGES=auto skips the step where no Docker engine answers, but not on a
    cluster, whose builder is a Job."""
    monkeypatch.setattr(ci, "engine_configured", lambda: False)
    assert ci.images_skipped(CicdSettings(build_images="auto")) == "no Docker engine"
    assert ci.images_skipped(SETTINGS.model_copy(update={"build_images": "auto"})) == ""
    assert ci.images_skipped(CicdSettings(build_images="never")) == "L2_BUILD_IMAGES=never"
