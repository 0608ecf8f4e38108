"""Every level's compose file is valid Compose v2, publishes ports on 127.0.0.1 only and
keeps secrets out of the file.

The checks read the files with tests/unit/compose_files.py (PyYAML), so they run on a
machine without Docker; where the Docker CLI is installed, `docker compose config` must
accept each file and agree with that reading (in CI, CI=true, a missing CLI fails)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from shared.servers import read_dotenv
from tests.unit.compose_files import ComposeError, interpolate, load, load_with

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = sorted(ROOT.glob("level*/compose.yaml"))
SETTINGS = ROOT / ".env.example"  # what `make env` turns into .env


def config(path: Path) -> dict:
    return load_with(path, SETTINGS)


@pytest.fixture(scope="module")
def compose_cli() -> None:
    try:
        works = subprocess.run(["docker", "compose", "version"], capture_output=True)
        message = "the Docker Compose v2 plugin is missing: make engine"
    except FileNotFoundError:
        works, message = None, "no `docker` CLI: make engine (the YAML checks ran without it)"
    if works is None or works.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def cli_config(path: Path) -> dict:
    """`docker compose config` of `path` with .env.example's settings and nothing else."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_HOST") if key in os.environ}
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(SETTINGS), "-f", str(path), "--profile", "*",
         "config", "--format", "json"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def essentials(services: dict) -> dict:
    """What the tests here check of each service, in one comparable form."""
    return {
        name: {
            "image": service.get("image"),
            "user": service.get("user"),
            "ports": sorted(
                (p.get("host_ip", ""), str(p["published"]), int(p["target"]))
                for p in service.get("ports", [])
            ),  # fmt: skip
            "environment": service.get("environment", {}),
            "healthcheck": "healthcheck" in service,
            "profiles": service.get("profiles"),
            "restart": service.get("restart"),
            "command": service.get("command"),
            "volume targets": sorted(v["target"] for v in service.get("volumes", [])),
        }
        for name, service in services.items()
    }


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_docker_compose_accepts_the_file_and_agrees_with_the_yaml_reading(compose_cli, path):
    assert essentials(cli_config(path)["services"]) == essentials(config(path)["services"])


def test_the_yaml_reading_interpolates_as_compose_does():
    variables = {"SET": "x", "EMPTY": ""}
    cases = {"${SET:-d}": "x", "${EMPTY:-d}": "d", "${EMPTY-d}": "", "${UNSET-d}": "d",
             "${SET:+on}": "on", "${EMPTY:+on}": "", "$$SET": "$$SET", "a$SET": "ax"}  # fmt: skip
    assert {text: interpolate(text, variables) for text in cases} == cases
    with pytest.raises(ComposeError, match="UNSET.*make env"):
        interpolate("${UNSET:?make env}", variables)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_env_example_defines_every_setting_a_compose_file_requires(path: Path):
    config(path)  # raises ComposeError on a ${NAME:?...} that .env.example lacks


def test_there_is_a_compose_file_for_level_0():
    assert ROOT / "level0_manual/compose.yaml" in COMPOSE_FILES


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_the_compose_file_publishes_on_loopback_only(path: Path):
    services = config(path)["services"]
    assert {"postgres", "mlflow"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_every_long_running_service_has_a_healthcheck(path: Path):
    services = config(path)["services"]
    # The serving image carries its own HEALTHCHECK (so any stack using it gets one).
    dockerfile = (ROOT / "infra/docker/Dockerfile").read_text()
    serving_stage = dockerfile.split("AS serving")[1].split("\nFROM ")[0]
    assert "HEALTHCHECK" in serving_stage
    images = {"mlops-levels/serving:latest"}
    for name, service in services.items():
        if service.get("profiles") == ["manual"] or service.get("restart") == "no":
            continue  # one-off commands
        assert "healthcheck" in service or service["image"] in images, name


def test_no_secret_is_written_in_a_compose_file():
    secret = re.compile(r"(password|token|secret)\w*\s*[:=]\s*(\S+)", re.I)
    uri_with_credentials = re.compile(r"://[^/\s:@$]+:[^@\s$]+@")
    overlays = ROOT.glob("level*/compose.*.yaml")  # compose.replicas.yaml, compose.workers.yaml
    for path in [*COMPOSE_FILES, *overlays, *ROOT.glob("infra/compose/*.yaml")]:
        text = path.read_text()
        for match in secret.finditer(text):
            value = match.group(2).strip("\"'")
            assert value.startswith("$"), f"{path.name}: {match.group(0)}"
        assert not uri_with_credentials.search(text), path.name


def test_level_2_runs_with_security_on():
    services = config(ROOT / "level2_cicd/compose.yaml")["services"]
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_APP"] == "basic-auth"
    assert "--app-name $$MLFLOW_SERVER_APP" in " ".join(services["mlflow"]["command"])
    assert services["prefect"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert services["production"]["environment"]["L2_SERVE_API_KEY"]
    for name, service in services.items():
        if service["image"].startswith("mlops-levels/python"):
            assert service["user"] == "10001", f"{name} runs as root"
        mounts = [volume["source"] for volume in service.get("volumes", [])]
        if "/var/run/docker.sock" in mounts:  # root on the host: only the CI/CD runner
            assert name == "runner", f"{name} mounts the Docker socket"
    # Levels 0 and 1 keep the tools open (a workshop's first hour): no login to learn yet
    level1 = config(ROOT / "level1_ct/compose.yaml")["services"]
    assert not level1["mlflow"]["environment"]["MLFLOW_SERVER_APP"]


def settings_classes() -> tuple[type, ...]:
    """Every level's settings objects."""
    from level0_manual.service import ServiceSettings as Level0Service
    from level0_manual.train import TrainSettings
    from level1_ct.service import ServiceSettings as Level1Service
    from level1_ct.settings import PipelineSettings
    from level2_cicd.git_server import GitServerSettings
    from level2_cicd.service import ProductionSettings
    from level2_cicd.settings import CicdSettings

    return (TrainSettings, Level0Service, PipelineSettings, Level1Service, CicdSettings,
            ProductionSettings, GitServerSettings)  # fmt: skip


def settings_fields() -> dict[str, object]:
    """Every environment variable a level's settings object reads, with its default."""
    return {
        f"{cls.model_config['env_prefix']}{name}".upper(): field.default
        for cls in settings_classes()
        for name, field in cls.model_fields.items()
    }


def test_the_request_limits_and_the_model_name_are_defined_once():
    """Every service takes its request limits from shared.api.RequestLimits, and every
    setting of the model's name defaults to shared.schema.MODEL_NAME."""
    from shared.api import RequestLimits
    from shared.schema import MODEL_NAME

    services = [cls for cls in settings_classes() if "max_records" in cls.model_fields]
    assert len(services) == 3  # levels 0, 1 and 2
    for cls in settings_classes():
        own = vars(cls).get("__annotations__", {})
        if cls is not RequestLimits:
            assert not {"max_records", "max_body_bytes"} & set(own), cls
        if "model_name" in cls.model_fields:
            assert cls.model_fields["model_name"].default == MODEL_NAME, cls
    assert all(issubclass(cls, RequestLimits) for cls in services)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.parent.name)
def test_a_compose_file_restates_no_setting_default(path: Path):
    """A setting a host may override is passed on as `L1_X:` (compose: the shell's or .env's
    value if set, else unset); a fallback `${L1_X:-v}` would be a second default, free to
    drift from the settings object's, and the stack would judge by other bars than the
    embedded mode."""
    fields = settings_fields()
    # an environment entry `L1_X: ${L1_X:-v}` (a published port's `${L1_SERVE_PORT:-8001}` is
    # the host's side, not the setting)
    restated = re.findall(r"^\s*(L[012]_\w+): .*\$\{\1:?-", path.read_text(), re.MULTILINE)
    assert not [name for name in restated if name in fields], restated
    passed_on = re.findall(r"^\s*(L[012]_\w+):\s*(?:#.*)?$", path.read_text(), re.MULTILINE)
    assert set(passed_on) <= set(fields), set(passed_on) - set(fields)


def test_a_passed_on_setting_is_the_hosts_if_set_else_unset():
    with_margin = load(ROOT / "level1_ct/compose.yaml", {**read_dotenv(SETTINGS),
                                                        "L1_CHAMPION_MARGIN": "-1"})  # fmt: skip
    runner = with_margin["services"]["runner"]["environment"]
    assert runner["L1_CHAMPION_MARGIN"] == "-1"
    unset = config(ROOT / "level1_ct/compose.yaml")["services"]["runner"]["environment"]
    assert unset["L1_CHAMPION_MARGIN"] is None  # not in the container: the setting's default


def test_dotenv_is_read_as_compose_reads_it(tmp_path):
    """The host side (tests, benches, make compare) reads `.env` with python-dotenv: quotes,
    `export`, comments and `=` inside a value, as Compose reads them."""
    from shared.servers import read_dotenv

    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\n"
        "export POSTGRES_USER=mlops\n"
        "POSTGRES_PASSWORD='s3cret # not a comment'\n"
        'L2_PREFECT_AUTH_STRING="admin:pa=ss"\n'
        "JUPYTER_TOKEN=abc  # a comment after the value\n"
        "EMPTY=\n"
        "NO_VALUE\n"
    )
    assert read_dotenv(dotenv) == {
        "POSTGRES_USER": "mlops",
        "POSTGRES_PASSWORD": "s3cret # not a comment",
        "L2_PREFECT_AUTH_STRING": "admin:pa=ss",
        "JUPYTER_TOKEN": "abc",
        "EMPTY": "",
    }


def test_the_gate_bars_and_the_canary_bounds_are_defined_once():
    """Level 1's gate settings take their defaults from shared.gate.GateConfig and level 2's
    canary settings from level2_cicd.rollout.Bounds, by name, not as numbers written again."""
    from level2_cicd.rollout import Bounds
    from shared.gate import GateConfig

    owners = {"level1_ct/settings.py": GateConfig, "level2_cicd/settings.py": Bounds}
    for file, cls in owners.items():
        tree = ast.parse((ROOT / file).read_text())
        defaults = {
            ast.unparse(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.AnnAssign) and node.value is not None
        }
        written_again = [
            n for n in cls.__dataclass_fields__ if f"{cls.__name__}.{n}" not in defaults
        ]
        assert written_again == [], f"{file}: not defaulting to {cls.__name__}'s: {written_again}"
