"""Level 2's CI builds a commit's images on a cluster with no Docker socket
(level2_cicd/cluster_images.py, deploy/k8s/level2/images.yaml), run for real without a cluster:

- the registry is the manifest's container (Debian's docker-registry in mlops-levels/builder);
- the build Job's container runs as CI writes it, in a container of its own that has what
  the pod has on a node: a user namespace (`hostUsers: false`: root inside is uid 200000
  outside), only the Job's capabilities, no privilege escalation, and a seccomp profile that
  refuses new namespaces as the runtime's default one does. Podman runs it: Docker cannot give
  one container a user namespace of its own. It pushes the commit's images to the registry;
- Docker pulls them from there, as a node would, and the serving image passes the contract
  probe, run by the contract Job's own command.

Needs Docker and podman (Debian's, which .ci/run installs); without them this skips, and with
CI=true it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from level2_cicd.cluster_images import BuildJobSettings, build_job, contract_job, image_refs
from level2_cicd.flows import ci
from level2_cicd.settings import CicdSettings
from shared.servers import free_port
from shared.waiting import wait_until
from tests.docker.conftest import ROOT, run

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
HOST_ROOT = 200_000  # where the pod's root lands on the node, as a user namespace maps it
# What a Kubernetes container runtime's default seccomp profile refuses without CAP_SYS_ADMIN
NAMESPACE_CALLS = {"unshare", "setns", "mount", "umount", "umount2", "pivot_root", "clone",
                   "clone3", "fsopen", "fsmount", "fsconfig", "move_mount", "open_tree",
                   "mount_setattr"}  # fmt: skip
NEW_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


@pytest.fixture(scope="module")
def podman(images) -> str:
    found = shutil.which("podman")
    message = "podman runs the build Job's container in a user namespace: apt-get install podman"
    if not found:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def runtime_default_seccomp(path: Path) -> Path:
    """Podman's default profile (Debian's containers-common) with the namespace rule of the
    profile Kubernetes' runtimes apply (RuntimeDefault): clone without new namespaces only."""
    profile = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("includes"):
            rule["names"] = [name for name in rule["names"] if name not in NAMESPACE_CALLS]
    profile["syscalls"] += [
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": NEW_NAMESPACE_FLAGS, "valueTwo": 0,
                   "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # ENOSYS: use clone
    ]  # fmt: skip
    path.write_text(json.dumps(profile))
    return path


def podman_run(podman: str, pod: dict, mounts: dict[str, str], seccomp: Path) -> list[str]:
    """`podman run` of the pod's one container with what the pod asks of its node."""
    [container] = pod["containers"]
    security = container["securityContext"]
    command = [podman, "--runtime", "runc", "run", "--rm", "--network", "host",
               # the sandbox's limits: podman would raise them
               "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
               "--user", str(security["runAsUser"]), "--cap-drop", "ALL",
               "--security-opt", f"seccomp={seccomp}"]  # fmt: skip
    assert pod["hostUsers"] is False
    command += ["--uidmap", f"0:{HOST_ROOT}:65536", "--gidmap", f"0:{HOST_ROOT}:65536"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for capability in security["capabilities"]["add"]:
        command += ["--cap-add", capability]
    if security["allowPrivilegeEscalation"] is False:
        command += ["--security-opt", "no-new-privileges"]
    for mount in container["volumeMounts"]:
        source = mounts[mount["name"]]
        command += ["-v", f"{source}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
    return [*command, container["image"], *container["command"], *container["args"]]


def checkout_of_head(path: Path) -> tuple[Path, str]:
    """What CI's checkout step leaves for the build: the commit's files (git's, as they are
    in the tree, so that a change under test is what gets built), and the commit."""
    tracked = run(["git", "ls-files", "shared", "level1_ct", "level2_cicd", ci.COMMIT_DOCKERFILE])
    for name in tracked.splitlines():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, path / name)
    sha = run(["git", "rev-parse", "HEAD"]).strip()
    return path, sha


def test_ci_builds_and_pushes_a_commits_images_in_a_user_namespace_without_a_socket(
    podman, tmp_path
):
    manifest = next(yaml.safe_load_all((ROOT / "deploy/k8s/level2/images.yaml").read_text()))
    [registry_container] = manifest["spec"]["template"]["spec"]["containers"]
    user = manifest["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    port = free_port()
    name = f"registry-{uuid.uuid4().hex[:8]}"
    volume = f"buildah-{uuid.uuid4().hex[:8]}"
    registry = f"127.0.0.1:{port}"
    settings = CicdSettings(image_registry=registry)
    job = BuildJobSettings(namespace="mlops-level2", builder_image=f"mlops-levels/builder:{VERSION}",
                           base_image=f"mlops-levels/python-env:{VERSION}")  # fmt: skip
    checkout, sha = checkout_of_head(tmp_path / "checkout")
    pulled = list(image_refs(sha, registry, settings).values())
    blobs = registry_container["volumeMounts"][0]["mountPath"]  # the PVC's
    run(["docker", "run", "-d", "--name", name, "--user", str(user), "--read-only",
         "-v", f"{name}:{blobs}", "-p", f"{registry}:5000", f"mlops-levels/builder:{VERSION}",
         *registry_container["command"]])  # fmt: skip
    try:
        probe = registry_container["readinessProbe"]["httpGet"]["path"]
        wait_until(lambda: urllib.request.urlopen(f"http://{registry}{probe}", timeout=2), 30,
                   "the registry", ignoring=(OSError,))  # fmt: skip
        # make k8s-up pushes the base the same way, through a port on 127.0.0.1
        run(["docker", "tag", job.base_image, f"{registry}/{job.base_image}"])
        run(["docker", "push", "--quiet", f"{registry}/{job.base_image}"], timeout=600)
        run(["sh", "-c", f"docker save {job.builder_image} | {podman} load --quiet"])
        run([podman, "volume", "create", volume])

        body = build_job(sha, Path("/data/ci") / sha[:12], settings, job)
        pod = body["spec"]["template"]["spec"]
        # The serving target alone: it is built on the pipeline stage, so every step of the
        # Dockerfile runs, and the script pushes each target the same way (a build of the 2 GB
        # environment's copies on vfs is minutes on 2 cores: one is enough to prove it)
        [container] = pod["containers"]
        only = f"serving={pulled[-1]}"
        assert only in container["args"]
        container["args"] = [*container["args"][:3], only]
        pulled = pulled[-1:]
        command = podman_run(podman, pod, {"checkout": str(checkout), "storage": volume},
                             runtime_default_seccomp(tmp_path / "seccomp.json"))  # fmt: skip
        built = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        for ref in pulled:
            assert f"pushed {ref}" in built.stdout

        # A node pulls them; they are the commit's code on the locked environment
        for ref in pulled:
            run(["docker", "pull", "--quiet", ref], timeout=600)
        serving = pulled[-1]
        config = json.loads(run(["docker", "image", "inspect", serving]))[0]["Config"]
        assert f"CODE_VERSION={sha}" in config["Env"] and config["User"] == "app"
        assert config["Healthcheck"]["Test"][0] == "CMD"  # docker format: HEALTHCHECK kept
        shown = run(["docker", "run", "--rm", "--entrypoint", "sh", serving, "-c",
                     "cat /app/level2_cicd/cluster_images.py; stat -c %U /home/app /app/shared"])  # fmt: skip
        code = (ROOT / "level2_cicd/cluster_images.py").read_text()
        assert shown == code + "app\nroot\n"  # owners kept: root in the pod wrote the layers

        # The contract, as the contract Job checks it (the stack's CI step, the same probe in
        # a container, runs in the level-2 stack's journeys)
        [contract] = contract_job(sha, ci.PROBE, settings, job)["spec"]["template"]["spec"][
            "containers"
        ]
        assert contract["image"] == serving
        env = [f"--env={e['name']}={e['value']}" for e in contract["env"]]
        output = run(["docker", "run", "--rm", "--cap-drop", "ALL", *env, "--user",
                      "10001", "--entrypoint", contract["command"][0], serving,
                      *contract["command"][1:]], timeout=300)  # fmt: skip
        assert "422 naming its field" in ci.probe_answer(output, serving)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "image", "rm", "-f", f"{registry}/{job.base_image}", *pulled],
                       capture_output=True)  # fmt: skip
        subprocess.run([podman, "volume", "rm", "-f", volume], capture_output=True)
        subprocess.run([podman, "image", "rm", "-f", job.builder_image], capture_output=True)
