"""The levels' real services in their container stacks: `make compare STACK=docker`.

The replay's processes decide as in the embedded replay (`compare/levels.py`); here the
services that answer are each level's own, in its stack, under a project of its own
(`compare-level0`..`2`, fresh volumes, free ports), and every decision reaches them the
level's way:

- level 0's service (`serving`) gets each model as a file: the person's hand-off
  (`level0_manual.handoff`, in the stack's workbench) and a restart;
- level 1's service (`serving`) follows `models:/churn@champion` in the stack's MLflow
  (Postgres-backed): each model is logged, registered and promoted with `level1_ct.registry`;
- level 2's production service (`production`, behind MLflow's basic-auth) also loads the
  `canary` alias as its canary arm and routes its share of the customers to it;
- new serving code (the bad change, released by hand at levels 0 and 1) is an image of
  the level's service with the changed `shared/api.py`, built on the stack's image, and
  the service is recreated from it; a revert recreates it from the stack's image.

Every customer of a day is one POST /predict over HTTP; what the services answer is what
the report shows. Only the services and what they need run (Postgres and MLflow at levels
1 and 2): the pipeline runs are the replay's. Needs the engine and `make images`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import mlflow
import numpy as np
from mlflow import MlflowClient

from compare.servers import CANARY_SHARE, CANARY_SPLIT, Answers
from compare.world import World
from level1_ct import registry
from level1_ct.service import served_version
from level2_cicd.names import CANARY
from level2_cicd.service import canary_arm
from shared import http_client, model_file
from shared.features import SKOPS_TRUSTED_TYPES
from shared.schema import FEATURE_NAMES, ID, MODEL_NAME
from shared.servers import free_port, read_dotenv
from shared.waiting import wait_until

if TYPE_CHECKING:
    from compare.changes import Code
    from compare.served import Model

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 8  # customers in flight at once


class Stack:
    """One level's service in its container stack, and how a level's decision reaches it."""

    def __init__(self, level: int, folder: str, service: str, image: str, port_variable: str,
                 environment: dict[str, str], work: Path, project: str):  # fmt: skip
        self.level, self.service, self.image = level, service, image
        self.work = work / f"level{level}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": f"{project}-level{level}",
                    port_variable: str(self.port), "MLFLOW_PORT": str(free_port())}  # fmt: skip
        self.mlflow_url = f"http://127.0.0.1:{self.env['MLFLOW_PORT']}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = environment  # the service's settings for the replay
        self.files = [ROOT / folder / "compose.yaml", self.work / "override.yaml"]
        self.api_source: str | None = None  # the serving code's shared/api.py (None: the image's)
        self.built: set[str] = set()  # images of changed serving code, removed at the end
        self.champion: int | None = None
        self.canary: int | None = None
        self.customers = ThreadPoolExecutor(CLIENTS, thread_name_prefix=f"level{level}-customer")
        self.client = http_client.client(self.url, timeout=30, connections=CLIENTS)

    # ---- the stack --------------------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 600) -> str:
        command = ["docker", "compose", *(a for f in self.files for a in ("-f", str(f))), *args]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def write_override(self, image: str) -> None:
        """The service's image (the stack's, or one with changed serving code), settings."""
        override = {"services": {self.service: {"image": image, "environment": self.environment}}}
        self.files[1].write_text(json.dumps(override))  # JSON is YAML

    def up(self) -> None:
        self.write_override(self.image)
        self.down_all()  # what a previous replay left
        if self.level > 0:
            self.compose("up", "-d", "--wait", "postgres", "mlflow")
        self.compose("up", "-d", "--wait", "--no-deps", self.service)

    def down_all(self) -> None:
        """Containers and volumes of every service, the workbench's (a profile's) included."""
        self.compose("--profile", "*", "down", "-v", "--remove-orphans")

    def down(self) -> None:
        self.customers.shutdown()
        self.client.close()
        try:
            self.down_all()
        finally:
            if self.built:
                done = subprocess.run(["docker", "image", "rm", *self.built],
                                      capture_output=True, text=True)  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(f"removing {sorted(self.built)}: {done.stderr[-500:]}")

    def wait_for(self, what: str, check: Callable[[], bool], seconds: float = 120) -> None:
        try:
            wait_until(check, seconds, f"level {self.level}: {what}", every=0.5)
        except TimeoutError as error:
            logs = self.compose("logs", "--tail", "30", self.service)
            raise TimeoutError(f"{error}\n{logs}") from None

    def serving(self, version: int) -> None:
        self.wait_for(f"service answering with v{version}",
                      lambda: served_version(self.url) == str(version))  # fmt: skip

    # ---- decisions ----------------------------------------------------------------------------

    def publish(self, model: Model) -> None:
        if self.level == 0:
            self.hand_over(model)
        else:
            version = self.register(model)
            registry.promote(MlflowClient(self.mlflow_url), MODEL_NAME, version)
        self.champion = model.version
        self.serving(model.version)

    def hand_over(self, model: Model) -> None:
        """Level 0's hand-off in its stack: the file into the service's volume, a restart."""
        exported = self.work / "exported"
        card = {"name": MODEL_NAME, "version": str(model.version), "code": model.code.name}
        model_file.save(model.pipeline, card, exported)
        self.compose("run", "--rm", "--no-deps", "-T", "-v", f"{exported}:/handover:ro",
                     "-e", "L0_EXPORT_DIR=/handover", "workbench",
                     "python", "-m", "level0_manual.handoff")  # fmt: skip
        self.compose("restart", self.service)

    def register(self, model: Model) -> str:
        """Log the model to the stack's MLflow and register it, as level 1's pipeline does."""
        mlflow.set_tracking_uri(self.mlflow_url)
        with mlflow.start_run(run_name=f"compare v{model.version} ({model.code.name})"):
            mlflow.set_tags({"code": model.code.name, "days": str(list(model.fitted.days))})
            info = mlflow.sklearn.log_model(
                model.pipeline, name="model", skops_trusted_types=SKOPS_TRUSTED_TYPES,
                pip_requirements=registry.model_requirements(),
            )  # fmt: skip
        tags = {"code": model.code.name, "replay_version": str(model.version)}
        with contextlib.redirect_stderr(io.StringIO()):  # "Successfully registered model ..."
            version = registry.register(
                MlflowClient(self.mlflow_url), MODEL_NAME, info.model_uri, tags
            )
        if int(version) != model.version:
            raise RuntimeError(
                f"level {self.level}'s registry numbered v{model.version} as {version}: the "
                "stack did not start empty, or a registration was sent twice"
            )
        return version

    def start_canary(self, model: Model) -> None:
        if model.code.api_source != self.api_source:
            raise NotImplementedError(
                "production's canary arm is a model alias: it runs production's serving code, "
                f"not the candidate's ({model.code.name})"
            )
        version = self.register(model)
        MlflowClient(self.mlflow_url).set_registered_model_alias(MODEL_NAME, CANARY, version)
        self.wait_for(f"canary v{version} loaded",
                      lambda: self.rollout().get("canary_version") == version)  # fmt: skip
        self.canary = model.version

    def end_canary(self, promote: bool) -> None:
        client = MlflowClient(self.mlflow_url)
        version = registry.aliases(client, MODEL_NAME)[CANARY]
        if promote:
            registry.promote(client, MODEL_NAME, version)
            self.champion = int(version)
        client.delete_registered_model_alias(MODEL_NAME, CANARY)
        self.wait_for("canary unloaded", lambda: self.rollout().get("canary_version") is None)
        self.canary = None
        self.serving(self.champion)

    def rollout(self) -> dict[str, Any]:
        try:
            return httpx.get(f"{self.url}/rollout", timeout=5).json()
        except httpx.HTTPError:
            return {}

    def release(self, code: Code) -> None:
        """New serving code: the service recreated from an image of it (or the stack's)."""
        if code.api_source == self.api_source:
            return
        image = self.image if code.api_source is None else self.build(code.api_source)
        self.write_override(image)
        self.compose("up", "-d", "--wait", "--no-deps", self.service)
        self.api_source = code.api_source
        self.serving(self.champion)

    def build(self, api_source: str) -> str:
        """The stack's service image with `shared/api.py` replaced: a person's rebuild."""
        tag = f"{self.env['COMPOSE_PROJECT_NAME']}-{self.service}:{hashlib.sha1(api_source.encode()).hexdigest()[:12]}"  # fmt: skip
        dockerfile = f"FROM {self.image}\nCOPY api.py /app/shared/api.py\n"
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, text in (("Dockerfile", dockerfile), ("api.py", api_source)):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        done = subprocess.run(["docker", "build", "-q", "-t", tag, "-"],
                              input=context.getvalue(), capture_output=True)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"building {tag} failed:\n{done.stderr.decode()[-3000:]}")
        self.built.add(tag)
        return tag

    # ---- customers ----------------------------------------------------------------------------

    def answer(self, features) -> Answers:
        records = json.loads(features[[*FEATURE_NAMES, ID]].to_json(orient="records"))
        replies = list(self.customers.map(self._post, records))
        answered = [(r[ID], reply) for r, reply in zip(records, replies, strict=True) if reply]
        answers = Answers(
            requests=len(records),
            failed=len(records) - len(answered),
            ids=np.array([i for i, _ in answered], dtype=object),
            probability=np.array([r["predictions"][0]["churn_probability"] for _, r in answered]),
            version=np.array([int(r["model_version"]) for _, r in answered], dtype=int),
        )
        if self.canary is not None:  # production answers a failed canary request itself
            expected = [canary_arm(i, CANARY_SHARE) for i in answers.ids]
            if list(answers.version == self.canary) != expected:
                raise RuntimeError(
                    f"level {self.level}'s canary v{self.canary} did not answer its customers: "
                    f"{self.rollout().get('canary')}"
                )
        return answers

    def _post(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """One customer's request: the answer, or None for a 422 (the API's contract)."""
        response = self.client.post("/predict", json=record)
        if response.status_code == 422:
            return None
        if response.status_code != 200:
            raise RuntimeError(
                f"level {self.level}'s service answered {response.status_code}: {response.text[:300]}"
            )
        return response.json()


class Stacks:
    """The three levels' services in their stacks (`compare.servers.Servers`)."""

    def __init__(self, world: World, progress: Callable[[str], None]):
        self.world, self.progress = world, progress
        env_file = ROOT / ".env"  # level 2's MLflow asks for its login
        self.secrets = read_dotenv(env_file) if env_file.is_file() else {}
        if not self.secrets.get("L2_MLFLOW_USERNAME"):
            raise RuntimeError("no .env with level 2's logins: run `make env` first")
        images = ["mlops-levels/python:latest", "mlops-levels/serving:latest", "mlops-levels/postgres:15"]  # fmt: skip
        if subprocess.run(["docker", "image", "inspect", *images], capture_output=True).returncode:
            raise RuntimeError("the stacks' images are missing (or no engine): run `make images`")
        self._work = tempfile.TemporaryDirectory(prefix="compare-stacks-")
        work = Path(self._work.name)
        follow = "1"  # the services check their registry alias every second
        project = self.world.settings.stack_project
        production = {"L2_SERVE_POLL_SECONDS": follow, "L2_SERVE_CANARY_SHARE": str(CANARY_SHARE),
                      "L2_SERVE_CANARY_SPLIT": CANARY_SPLIT}  # fmt: skip
        self.stacks = {
            0: Stack(0, "level0_manual", "serving", "mlops-levels/serving:latest",
                     "L0_SERVE_PORT", {}, work, project),
            1: Stack(1, "level1_ct", "serving", "mlops-levels/python:latest",
                     "L1_SERVE_PORT", {"L1_SERVE_POLL_SECONDS": follow}, work, project),
            2: Stack(2, "level2_cicd", "production", "mlops-levels/python:latest",
                     "L2_SERVE_PORT", production, work, project),
        }  # fmt: skip

    def __enter__(self) -> Stacks:
        os.environ["MLFLOW_TRACKING_USERNAME"] = self.secrets["L2_MLFLOW_USERNAME"]
        os.environ["MLFLOW_TRACKING_PASSWORD"] = self.secrets["L2_MLFLOW_PASSWORD"]
        # No retries: a retried registration could create a version twice (localhost anyway)
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        # No lines per logged model: the progress is the replay's
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        try:
            for stack in self.stacks.values():
                started = time.monotonic()
                stack.up()
                self.progress(f"level {stack.level}'s stack is up ({time.monotonic() - started:.0f} s):"
                              f" {stack.service} {stack.url}"
                              + (f", MLflow {stack.mlflow_url}" if stack.level else ""))  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        problems = []
        for stack in self.stacks.values():
            try:
                stack.down()
            except Exception as error:  # take the others down all the same, then say so
                problems.append(f"level {stack.level}: {error}")
        self._work.cleanup()
        if problems:
            raise RuntimeError("the stacks did not all come down: " + "; ".join(problems))

    def start(self, level: int, model: Model, code: Code) -> None:
        self.stacks[level].release(code)
        self.stacks[level].publish(model)

    def publish(self, level: int, model: Model) -> None:
        self.stacks[level].publish(model)

    def start_canary(self, level: int, model: Model, kind: str = "canary") -> None:
        if kind != "canary":
            raise NotImplementedError(f"the stacks replay level 2's canary, not a {kind}")
        self.stacks[level].start_canary(model)

    def end_canary(self, level: int, promote: bool) -> None:
        self.stacks[level].end_canary(promote)

    def release(self, level: int, code: Code) -> None:
        self.stacks[level].release(code)

    def answer(self, level: int, day: int) -> Answers:
        return self.stacks[level].answer(self.world.features(day))
