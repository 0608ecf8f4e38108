"""Read a compose file as `docker compose config` does, for what the tests check, without
the Docker CLI: YAML anchors and merge keys, `include` (a list of paths layers later files
over earlier ones), `${VAR}` interpolation from a `.env`-style file, `extends`, `env_file` (its
variables under the service's `environment`), and ports and volumes in their long form, an
environment entry without a value taken from the settings.
tests/unit/test_compose.py compares it with `docker compose config`
where the CLI is installed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from shared.servers import read_dotenv

# $$ is a literal $ (kept as is, as `docker compose config` prints it); ${NAME<op>word}
# with op one of :- - :? ? :+ +; $NAME
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?P<op>:?[-?+])?(?P<word>[^}]*)\}|\$(?P<bare>\w+)")
APPENDED = {"ports", "volumes", "expose", "group_add"}  # sequences an override file extends


class ComposeError(ValueError):
    """A compose file refers to a variable it requires and the settings do not define."""


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$$"
        name = match.group("name") or match.group("bare")
        op, word = match.group("op") or "", match.group("word") or ""
        value = variables.get(name)
        is_set, is_empty = value is not None, not value
        if op in (":?", "?") and (not is_set or (op == ":?" and is_empty)):
            raise ComposeError(f"${{{name}}} is required: {word}")
        if op in (":-", "-") and (not is_set or (op == ":-" and is_empty)):
            return word
        if op in (":+", "+"):
            return word if is_set and (op == "+" or not is_empty) else ""
        return value or ""

    return VARIABLE.sub(substitute, value)


def merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in APPENDED:
        return base + override
    return override


def port(entry: Any) -> dict[str, Any]:
    """A `ports` entry in the long form: host_ip, published, target."""
    if isinstance(entry, dict):
        return entry
    parts = str(entry).split(":")
    host_ip = parts[0] if len(parts) == 3 else ""
    published = parts[-2] if len(parts) >= 2 else ""
    return {"host_ip": host_ip, "published": published, "target": int(parts[-1])}


def volume(entry: Any) -> dict[str, Any]:
    """A `volumes` entry of a service in the long form: source, target."""
    if isinstance(entry, dict):
        return entry
    source, target, *_ = str(entry).split(":")
    return {"source": source, "target": target}


def load(path: Path, variables: dict[str, str]) -> dict[str, Any]:
    """The compose file at `path` with its includes, interpolated with `variables`."""
    document = yaml.safe_load(path.read_text()) or {}
    variables = {"COMPOSE_PROJECT_NAME": document.get("name", path.parent.name), **variables}
    model: dict[str, Any] = {}
    for include in document.pop("include", []):
        paths = include if isinstance(include, str) else include["path"]
        layered: dict[str, Any] = {}
        for included in [paths] if isinstance(paths, str) else paths:
            layered = merge(layered, load(path.parent / included, variables))
        model = merge(model, layered)
    own = {key: value for key, value in document.items() if not key.startswith("x-")}
    own = interpolate(own, variables)
    for name, service in own.get("services", {}).items():
        if "extends" in service:  # the base service, then this one's keys over it
            base = service.pop("extends")
            found = load(path.parent / base["file"], variables)["services"][base["service"]]
            own["services"][name] = merge(found, service)
    model = merge(model, own)
    for service in model.get("services", {}).values():
        if "ports" in service:
            service["ports"] = [port(entry) for entry in service["ports"]]
        if "volumes" in service:
            service["volumes"] = [volume(entry) for entry in service["volumes"]]
        if isinstance(service.get("environment"), list):
            service["environment"] = dict(
                item.split("=", 1) if "=" in item else (item, None)
                for item in service["environment"]
            )
        if "env_file" in service:  # its variables, under the service's own environment
            files = service.pop("env_file")
            from_files = {}
            for env_file in [files] if isinstance(files, str) else files:
                from_files |= read_dotenv(path.parent / env_file)
            service["environment"] = {**from_files, **(service.get("environment") or {})}
        if "environment" in service:  # `NAME:` with no value: the settings' NAME, if set
            service["environment"] = {
                name: variables.get(name) if value is None else value
                for name, value in service["environment"].items()
            }
    return model


def load_with(path: Path, env_file: Path) -> dict[str, Any]:
    return load(path, read_dotenv(env_file))
