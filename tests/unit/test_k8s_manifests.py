"""The levels on Kubernetes (deploy/k8s/), proved offline, with no cluster:

- every level's overlay renders (`kubectl kustomize`, kustomize v5) and validates strictly
  against Kubernetes' OpenAPI schemas of every minor from 1.31 to the newest
  kubernetes-validate bundles;
- its structure holds: selectors match the pods' labels, Services reach a container port,
  every workload has probes, requests and limits, runs as non-root, on a versioned image;
  the prediction service is replicated, rolls without a gap and is autoscaled and guarded;
  the only Secret is generated from .env;
- it runs what the level's compose stack runs: per service, the same image, command,
  environment, ports and health checks (tests/unit/compose_files.py reads compose).

Rendering needs kubectl (kustomize v5: kubectl 1.27 or newer); without it these skip, and with
CI=true they fail."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from level2_cicd.names import WORK_POOL
from shared.servers import read_dotenv
from tests.unit.compose_files import load_with
from tests.unit.pod_security import breaks_baseline

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
LEVELS = {
    "0": ROOT / "level0_manual/compose.yaml",
    "1": ROOT / "level1_ct/compose.yaml",
    "2": ROOT / "level2_cicd/compose.yaml",
}
SETTINGS = ROOT / ".env.example"  # the keys .env has (make env), with placeholder values
OLDEST = (1, 31)
SERVERS = {"Deployment", "StatefulSet"}  # run until stopped: probed
WORKLOADS = SERVERS | {"Job"}  # a Job runs to completion
# The prediction service of each level
SERVING = {"0": "serving", "1": "serving", "2": "production"}


def kubectl() -> str:
    found = shutil.which("kubectl")
    message = "kubectl with kustomize v5 is needed to render deploy/k8s (kubectl >= 1.27)"
    if found:
        client = subprocess.run([found, "version", "--client"], capture_output=True, text=True)
        kustomize = re.search(r"Kustomize Version: v(\d+)", client.stdout)
        if kustomize and int(kustomize.group(1)) >= 5:
            return found
        message += f"; found {client.stdout.strip()!r}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def distinct_settings(path: Path) -> Path:
    """.env.example's keys, each with a value of its own (the placeholders repeat
    `change-me`), so that a secret found in a manifest says which key it came from."""
    keys = read_dotenv(SETTINGS).keys()
    path.write_text("".join(f"{key}=value-of-{key.lower()}\n" for key in keys))
    return path


def render(level: str, tmp: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of the level's overlay, in a copy of the tree whose .env holds
    distinct_settings (a clean checkout has no .env; the real one is not read)."""
    for name in ("infra", "shared", "level0_manual", "level1_ct", "level2_cicd"):
        (tmp / name).symlink_to(ROOT / name)
    shutil.copytree(K8S, tmp / "deploy/k8s")
    distinct_settings(tmp / ".env")
    result = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone",
         str(tmp / f"deploy/k8s/level{level}")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(LEVELS), ids=lambda level: f"level{level}")
def level(request, tmp_path_factory) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param, tmp_path_factory.mktemp(f"k8s{request.param}"))


def of_kind(docs: list[dict], *kinds: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] in kinds}


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def minors() -> list[str]:
    """Every Kubernetes minor kubernetes-validate bundles, from OLDEST up."""
    return sorted({v for v in kv_utils.all_versions() if version(v) >= OLDEST}, key=version)


# ---- validation ----------------------------------------------------------------------------


def test_every_overlay_validates_strictly_for_every_kubernetes_minor_from_1_31(level):
    number, docs = level
    versions = minors()
    assert versions[0] == "1.31.0" and version(versions[-1]) >= (1, 37), versions
    errors = []
    for minor in versions:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, minor, strict=True)
            except kubernetes_validate.ValidationError as error:
                errors.append(f"{minor} {doc['kind']}/{doc['metadata']['name']}: {error}")
    assert not errors, "\n".join(errors[:20])


def test_strict_validation_catches_a_field_kubernetes_does_not_have(level):
    """The check above can fail: a misspelt field is refused."""
    _, docs = level
    broken = yaml.safe_load(yaml.safe_dump(of_kind(docs, "Deployment")["mlflow"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readynessProbe"):
        kubernetes_validate.validate(broken, minors()[0], strict=True)


def test_the_images_are_tagged_with_the_projects_version():
    """build-images.sh tags what it builds with pyproject.toml's version; the manifests ask
    for that tag (a bump of the version moves both)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    component = yaml.safe_load((K8S / "components/images/kustomization.yaml").read_text())
    tags = {image["name"]: image["newTag"] for image in component["images"]}
    assert tags == {"mlops-levels/python": version, "mlops-levels/python-env": version,
                    "mlops-levels/serving": version, "mlops-levels/builder": version,
                    "mlops-levels/observability": version, "mlops-levels/postgres": "15"}  # fmt: skip
    assert ':$version"' in (ROOT / "infra/scripts/build-images.sh").read_text()


# ---- structure -----------------------------------------------------------------------------


def test_selectors_match_the_pods_and_services_reach_a_container_port(level):
    _, docs = level
    workloads = of_kind(docs, *SERVERS)  # a Job's selector is Kubernetes' own
    for name, workload in workloads.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
    for name, service in of_kind(docs, "Service").items():
        selector = service["spec"]["selector"]
        selected = [w for w in workloads.values()
                    if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert selected, f"Service {name} selects no pods"
        ports = [p for w in selected for c in containers(w) for p in c.get("ports", [])]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (name, port)


def test_every_workload_has_probes_resources_a_versioned_image_and_runs_as_non_root(level):
    _, docs = level
    for name, workload in of_kind(docs, *WORKLOADS).items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        if workload["kind"] == "Job":  # retried on failure, a bounded number of times
            assert pod["restartPolicy"] == "OnFailure" and workload["spec"]["backoffLimit"], name
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            if workload["kind"] in SERVERS and container in pod["containers"]:  # not init
                assert "readinessProbe" in container and "livenessProbe" in container, where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][bound].keys(), where
            image, _, tag = container["image"].rpartition(":")
            assert image.startswith("mlops-levels/") and tag and tag != "latest", where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where


def test_the_prediction_service_is_replicated_rolls_without_a_gap_and_is_autoscaled(level):
    number, docs = level
    serving = of_kind(docs, "Deployment")[SERVING[number]]
    assert serving["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [container] = containers(serving)
    assert container["readinessProbe"]["httpGet"]["path"] == "/model"  # 503 until a model
    assert serving["spec"]["replicas"] >= 2
    name = SERVING[number]
    hpa = of_kind(docs, "HorizontalPodAutoscaler")[name]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": name}  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = of_kind(docs, "PodDisruptionBudget")[name]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        serving["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_only_secret_is_generated_from_env_and_no_value_is_in_git(level):
    _, docs = level
    [secret] = of_kind(docs, "Secret").values()
    assert secret["metadata"]["name"].startswith("mlops-secrets-")  # kustomize's hash suffix
    assert secret["data"].keys() == read_dotenv(SETTINGS).keys()
    referenced = {
        ref["secretKeyRef"]["name"]
        for w in of_kind(docs, *WORKLOADS).values() for c in containers(w)
        for ref in (e.get("valueFrom", {}) for e in c.get("env", [])) if "secretKeyRef" in ref
    }  # fmt: skip
    assert referenced == {secret["metadata"]["name"]}
    placeholders = {v for v in read_dotenv(SETTINGS).values() if v}
    for path in K8S.rglob("*.yaml"):
        text = path.read_text()
        assert not [v for v in placeholders if len(v) > 6 and v in text], path


# ---- parity with the compose stack ---------------------------------------------------------


# Where Kubernetes runs a service differently on purpose
OWN_COMMAND = {
    # `docker compose run --rm workbench python -m ...` there; a pod to `kubectl exec` into here
    ("0", "workbench"),
}
ONLY_IN_KUBERNETES = {
    # The stack's runner runs the pipeline pool's flow runs as its own processes; here a
    # Kubernetes worker of its own runs each as a Job (deploy/k8s/level2/worker.yaml)
    ("2", "worker"),
    # The stack's one MLflow and one Prefect server migrate their databases as they start;
    # here Jobs do, and the servers wait for them (test_migrations_are_jobs_the_servers_wait_for)
    *((level, "mlflow-migrate") for level in ("0", "1", "2")),
    *((level, "prefect-migrate") for level in ("1", "2")),
    # The stack's CI builds images with the host's Docker engine; here buildah in Jobs pushes
    # them to a registry of the cluster's (test_ci_builds_images_in_the_cluster_...)
    ("2", "registry"),
}
OWN_ENV = {
    # No Docker socket in a cluster (deploy/k8s/level2/runner.yaml): the staging service is a
    # process of the commit's checkout (the images are built by Jobs: L2_IMAGE_BUILDER)
    ("2", "runner"): {"L2_STAGING", "L2_DOCKER_NETWORK"},
}


# The optional ALERT_* destinations (.env.example: commented) and their defaults when unset
OPTIONAL_SECRETS = {
    **dict.fromkeys(
        [
            "ALERT_WEBHOOK_URL",
            "ALERT_SLACK_WEBHOOK_URL",
            "ALERT_SLACK_CHANNEL",
            "ALERT_EMAIL_TO",
            "ALERT_SMTP_SMARTHOST",
            "ALERT_SMTP_FROM",
            "ALERT_SMTP_USERNAME",
            "ALERT_SMTP_PASSWORD",
        ],
        "",
    ),  # fmt: skip
    "ALERT_SMTP_REQUIRE_TLS": "true",  # shared/alert_routing.py's default
}


def k8s_env(container: dict, docs: list[dict], secrets: dict[str, str]) -> dict[str, tuple]:
    """The container's environment, as (value, from the Secret?): ConfigMap keys (envFrom),
    values, the pod's own fields, and the Secret's keys read from `secrets` (.env), an
    optional one unset there standing for the program's default."""
    maps = of_kind(docs, "ConfigMap")
    found: dict[str, tuple] = {}
    for source in container.get("envFrom", []):
        found |= {k: (v, False) for k, v in maps[source["configMapRef"]["name"]]["data"].items()}
    for entry in container.get("env", []):
        if "fieldRef" in entry.get("valueFrom", {}):  # the pod's own: its namespace, say
            found[entry["name"]] = (f"<{entry['valueFrom']['fieldRef']['fieldPath']}>", False)
        elif "valueFrom" in entry:
            key = entry["valueFrom"]["secretKeyRef"]["key"]
            found[entry["name"]] = (secrets.get(key, OPTIONAL_SECRETS.get(key)), True)
        else:
            found[entry["name"]] = (entry.get("value", ""), False)
    return found


def health(check: list[str] | dict) -> tuple[int, str] | str | None:
    """What a compose healthcheck's test or a probe asks: (port, path) of an HTTP check, else
    the command (a shell's script alone)."""
    if isinstance(check, dict) and "httpGet" in check:
        return check["httpGet"]["port"], check["httpGet"]["path"]
    command = check["exec"]["command"] if isinstance(check, dict) else check
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/[^' \"]*)", " ".join(command))
    if found:
        return int(found.group(1)), found.group(2)
    if command[0] == "CMD-SHELL" or command[:2] == ["sh", "-c"]:
        return command[-1].replace("$$", "$")
    return " ".join(command[1:] if command[0] == "CMD" else command)


def port_number(container: dict, port: int | str) -> int:
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    return named.get(port, port)


@pytest.mark.parametrize("number", sorted(LEVELS))
def test_each_compose_service_runs_the_same_in_kubernetes(number, tmp_path):
    docs = render(number, tmp_path)
    secrets = read_dotenv(tmp_path / ".env")  # the values render() gave .env's keys
    compose = load_with(LEVELS[number], tmp_path / ".env")["services"]
    workloads = of_kind(docs, *WORKLOADS)
    only_here = {name for level, name in ONLY_IN_KUBERNETES if level == number}
    assert workloads.keys() - only_here == compose.keys()
    for name, service in compose.items():
        [container] = workloads[name]["spec"]["template"]["spec"]["containers"]
        # The same image (the tag is the project's version there, `latest` in compose)
        assert container["image"].rpartition(":")[0] == service["image"].rpartition(":")[0], name
        # The same command: compose's entrypoint + command are Kubernetes' command + args
        # ($$ is compose's escape for a $ the shell in the container expands)
        ours = [*container.get("command", []), *container.get("args", [])]
        theirs = [*service.get("entrypoint", []), *service.get("command", [])]
        if (number, name) not in OWN_COMMAND:
            assert [a.replace("$$", "$") for a in theirs] == ours, name
        # The same environment: every variable the stack sets, to the same value, a secret
        # (one of .env's values, or an optional one) from the Secret; the settings compose
        # passes on only when set stay unset
        env = k8s_env(container, docs, secrets)
        for key, value in (service.get("environment") or {}).items():
            if key in OWN_ENV.get((number, name), ()):
                continue
            if value is None:
                assert key not in env, (name, key)
                continue
            assert env.get(key, (None,))[0] == value, (name, key, env.get(key), value)
            if value in secrets.values() or key in OPTIONAL_SECRETS:
                assert env[key][1], f"{name}: {key} is a secret, not from the Secret"
        # The same ports, and the stack's health check among the probes
        ports = {p["containerPort"] for p in container.get("ports", [])}
        assert {p["target"] for p in service.get("ports", [])} <= ports, name
        if "healthcheck" in service:
            probes = {
                (port_number(container, found[0]), found[1]) if isinstance(found, tuple) else found
                for found in (health(container[p]) for p in ("readinessProbe", "livenessProbe"))
            }
            assert health(service["healthcheck"]["test"]) in probes, (name, probes)


@pytest.mark.parametrize("number", ["1", "2"])
def test_the_levels_settings_have_one_source_for_compose_and_the_configmap(number):
    """The level's fixed settings live in one file, `<level>/stack.env`: compose's services
    read it (env_file) and kustomize generates the level's ConfigMap from it. Neither the
    compose file's services of the level's code nor the overlay write one of its keys again."""
    stack_env = LEVELS[number].parent / "stack.env"
    keys = read_dotenv(stack_env).keys()
    assert {"MLFLOW_TRACKING_URI", "PREFECT_API_URL"} <= keys
    overlay = yaml.safe_load((K8S / f"level{number}/kustomization.yaml").read_text())
    [generator] = [g for g in overlay["configMapGenerator"] if g["name"] == f"level{number}-env"]
    assert generator == {"name": f"level{number}-env",
                         "envs": [f"../../../{LEVELS[number].parent.name}/stack.env"]}  # fmt: skip
    raw = yaml.safe_load(LEVELS[number].read_text())
    assert not keys & raw["x-env"].keys()
    taking = {name for name, service in raw["services"].items()
              if raw["x-env"].keys() <= (service.get("environment") or {}).keys()}  # fmt: skip
    assert len(taking) >= 4
    for name in taking:  # the services of the level's code: the file, and none of its keys
        service = raw["services"][name]
        assert service.get("env_file") == "stack.env", name
        assert not keys & service["environment"].keys(), name


@pytest.mark.parametrize("number", ["1", "2"])
def test_prometheus_scrapes_every_replica_of_the_prediction_service(number, tmp_path):
    """Through the Service a scrape would reach one replica at random; Prometheus discovers
    them all by DNS instead (`<service>-replicas`: a headless Service here, a network alias in
    the stack), the ones without a model included. At level 2, CD reads every replica's canary
    figures through the same name."""
    docs, name = render(number, tmp_path), SERVING[number]
    replicas = of_kind(docs, "Service")[f"{name}-replicas"]
    assert replicas["spec"]["clusterIP"] == "None"
    assert replicas["spec"]["publishNotReadyAddresses"] is True
    pods = of_kind(docs, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
    assert replicas["spec"]["selector"].items() <= pods.items()
    [config] = [
        m for n, m in of_kind(docs, "ConfigMap").items() if n.startswith("prometheus-config")
    ]
    jobs = {
        j["job_name"]: j for j in yaml.safe_load(config["data"]["prometheus.yml"])["scrape_configs"]
    }
    [found] = jobs[name]["dns_sd_configs"]
    assert found["names"] == [f"{name}-replicas"] and (found["type"], found["port"]) == ("A", 8000)
    services = load_with(LEVELS[number], SETTINGS)["services"]
    assert f"{name}-replicas" in services[name]["networks"]["default"]["aliases"]
    if number == "2":
        assert services["runner"]["environment"]["L2_PRODUCTION_REPLICAS"] == f"{name}-replicas"


# ---- level 2's pipeline pool: a Kubernetes work pool ---------------------------------------

# What Prefect's Kubernetes worker does in its namespace (the Role of Prefect's worker Helm
# chart, prefect-helm charts/prefect-worker/templates/role.yaml)
WORKER_NEEDS = {
    ("", "pods"): {"get", "watch", "list"},
    ("", "pods/log"): {"get", "watch", "list"},
    ("", "pods/status"): {"get", "watch", "list"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "update", "patch", "delete"},
}


def granted(docs: list[dict], pod: dict) -> dict[tuple[str, str], set[str]]:
    """What the pod's ServiceAccount may do, by (API group, resource), through its one
    RoleBinding."""
    account = ("ServiceAccount", pod["serviceAccountName"], "mlops-level2")
    assert pod["serviceAccountName"] in of_kind(docs, "ServiceAccount")
    [binding] = [
        b for b in of_kind(docs, "RoleBinding").values()
        if account in {(s["kind"], s["name"], s.get("namespace")) for s in b["subjects"]}
    ]  # fmt: skip
    role = of_kind(docs, "Role")[binding["roleRef"]["name"]]
    return {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
    }  # fmt: skip


def test_the_pipeline_workers_role_is_what_prefects_worker_needs_and_no_more(tmp_path):
    docs = render("2", tmp_path)
    pod = of_kind(docs, "Deployment")["worker"]["spec"]["template"]["spec"]
    assert granted(docs, pod) == WORKER_NEEDS
    assert not of_kind(docs, "ClusterRole", "ClusterRoleBinding")  # its namespace only
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    watched = env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["valueFrom"]
    assert watched == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # It serves the pool CD deploys the pipeline to, and the runner leaves that pool to it
    command = " ".join(pod["containers"][0]["command"])
    assert f"--pool {WORK_POOL} --type kubernetes" in command
    runner = of_kind(docs, "Deployment")["runner"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "L2_PIPELINE_WORKER", "value": "kubernetes"} in runner["env"]


# Each server with a database: the Job that migrates it, and what its init container runs
MIGRATIONS = {
    "mlflow": ("mlflow-migrate", "exec mlflow db upgrade", "postgres:5432/mlflow"),
    "prefect": ("prefect-migrate", "exec prefect server database upgrade --yes",
                "postgres:5432/prefect"),
}  # fmt: skip


def test_migrations_are_jobs_the_servers_wait_for(level):
    """Every MLflow and Prefect server starts only once its migration Job has brought its
    database to the schema its image expects (shared/schema_ready.py in an init container),
    and does not migrate itself: replicas and rolling updates never race a migration. The Job
    and the server use the same image, so the schema is the server's own."""
    number, docs = level
    servers, jobs = of_kind(docs, "Deployment"), of_kind(docs, "Job")
    for server, (job, upgrade, database) in MIGRATIONS.items():
        if server not in servers:
            assert number == "0" and server == "prefect"  # level 0 orchestrates nothing
            continue
        pod = servers[server]["spec"]["template"]["spec"]
        [wait] = pod["initContainers"]
        assert f"exec python -m shared.schema_ready {server}" in wait["command"][-1], server
        assert database in wait["command"][-1], server
        [migrate] = jobs[job]["spec"]["template"]["spec"]["containers"]
        assert upgrade in migrate["command"][-1] and database in migrate["command"][-1], job
        assert migrate["image"] == wait["image"] == pod["containers"][0]["image"], job
        # Gone after it finished, so that the next apply (a new image) runs it again
        assert jobs[job]["spec"]["ttlSecondsAfterFinished"] > 0, job
    if "prefect" in servers:
        env = {e["name"]: e.get("value") for e in containers(servers["prefect"])[-1]["env"]}
        assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"


def test_the_committed_job_template_has_every_variable_of_prefects_default():
    """An upgrade of prefect-kubernetes that adds a variable (or a setting of the job) shows
    here: the committed template is Prefect's default with our Job."""
    from prefect_kubernetes.worker import KubernetesWorker

    default = KubernetesWorker.get_default_base_job_template()
    ours = json.loads((K8S / "level2/work-pool/base-job-template.json").read_text())
    assert ours["variables"]["properties"].keys() == default["variables"]["properties"].keys()
    assert ours["job_configuration"].keys() == default["job_configuration"].keys()


# ---- level 2's CI on a cluster: images without a Docker socket -----------------------------

# What CI's image Jobs need of the API (level2_cicd/cluster_images.py's run_job): create a Job
# (and delete it where the cluster ignores hostUsers), read its status, find its pod, read its log
RUNNER_NEEDS = {
    ("batch", "jobs"): {"create", "delete"},
    ("batch", "jobs/status"): {"get"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
}
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_every_namespace_enforces_the_baseline_pod_security_standard_and_meets_it(level):
    _, docs = level
    [namespace] = of_kind(docs, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    for name, workload in of_kind(docs, *WORKLOADS).items():
        assert not breaks_baseline(workload["spec"]["template"]["spec"]), name


def test_ci_builds_images_in_the_cluster_with_no_socket_and_the_nodes_pull_them(tmp_path):
    from level2_cicd.cluster_images import RUNNER, BuildJobSettings, build_job, contract_job
    from level2_cicd.settings import CicdSettings

    docs = render("2", tmp_path)
    runner = of_kind(docs, "Deployment")["runner"]["spec"]["template"]
    assert granted(docs, runner["spec"]) == RUNNER_NEEDS
    # No workload mounts anything of its node: a Docker socket least of all
    for name, workload in of_kind(docs, *WORKLOADS).items():
        assert not [v for v in workload["spec"]["template"]["spec"].get("volumes", [])
                    if "hostPath" in v], name  # fmt: skip
    [container] = runner["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["L2_IMAGE_BUILDER"] == "kubernetes" and env["L2_BUILD_IMAGES"] == "always"
    # The builder pushes to the registry's Service; a node pulls through its NodePort on its
    # own loopback (a node cannot resolve a Service's name)
    [port] = of_kind(docs, "Service")["registry"]["spec"]["ports"]
    assert env["L2_IMAGE_REGISTRY"] == f"registry:{port['port']}"
    assert env["L2_IMAGE_PULL_REGISTRY"] == f"localhost:{port['nodePort']}"
    # The checkouts the build reads are the runner's workspace, on the claim the Job mounts
    job = BuildJobSettings(namespace="mlops-level2",
                           builder_image=runner["metadata"]["annotations"]["builder-image"],
                           base_image=runner["metadata"]["annotations"]["base-image"])  # fmt: skip
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in runner["spec"]["volumes"]}
    claim = volumes[mounts[str(job.checkouts_mount)]]["persistentVolumeClaim"]["claimName"]
    assert claim == job.checkouts_claim
    assert env["L2_WORKSPACE"].startswith(f"{job.checkouts_mount}/")
    # The images the Jobs run are tagged as kustomize tags every other (the images component)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (job.builder_image, job.base_image) == (
        f"mlops-levels/builder:{version}",
        f"mlops-levels/python-env:{version}",
    )
    # The build runs on the runner's node (the claim is ReadWriteOnce)
    assert RUNNER.items() <= runner["metadata"]["labels"].items()
    # The Jobs CI creates meet the namespace's Pod Security Standard and validate strictly
    settings = CicdSettings(image_builder="kubernetes", image_registry=env["L2_IMAGE_REGISTRY"],
                            image_pull_registry=env["L2_IMAGE_PULL_REGISTRY"])  # fmt: skip
    checkout = Path(env["L2_WORKSPACE"]) / SHA[:12]
    bodies = [build_job(SHA, checkout, settings, job), contract_job(SHA, "", settings, job)]
    for body in bodies:
        assert not breaks_baseline(body["spec"]["template"]["spec"])
    broken = build_job(SHA, checkout, settings, job)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"][
        "add"
    ].append("SYS_ADMIN")
    assert breaks_baseline(broken["spec"]["template"]["spec"]) == ["buildah: SYS_ADMIN"]
    for minor in minors():
        for body in bodies:
            kubernetes_validate.validate(body, minor, strict=True)
