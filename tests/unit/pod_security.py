"""Kubernetes' baseline Pod Security Standard, as the tests of pod specs check it (the
manifests in deploy/k8s and the Jobs level 2's CI makes, level2_cicd/cluster_images.py)."""

from __future__ import annotations

# Kubernetes' baseline Pod Security Standard: the capabilities a container may add
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                         "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                         "SYS_CHROOT"}  # fmt: skip


def breaks_baseline(pod: dict) -> list[str]:
    """What in a pod's spec the baseline Pod Security Standard refuses (its checks that the
    manifests could break: privilege, the node's namespaces and paths, capabilities)."""
    found = [f"host{n}" for n in ("Network", "PID", "IPC") if pod.get(f"host{n}")]
    found += [v["name"] for v in pod.get("volumes", []) if "hostPath" in v]
    for container in pod.get("initContainers", []) + pod["containers"]:
        security = container.get("securityContext", {})
        if security.get("privileged"):
            found.append(f"{container['name']}: privileged")
        added = set(security.get("capabilities", {}).get("add", [])) - BASELINE_CAPABILITIES
        found += [f"{container['name']}: {cap}" for cap in sorted(added)]
        found += [f"{container['name']}: hostPort" for port in container.get("ports", [])
                  if port.get("hostPort")]  # fmt: skip
    return found
