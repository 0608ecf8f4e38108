"""Level 1's prediction service: it serves whatever the registry calls the champion.

Unlike level 0 nobody hands a file over. The service loads `models:/<name>@champion` at
start and checks the alias every `poll_seconds`; when it has moved, the new version is
loaded in the background and swapped in with one reference assignment. A request scores
with the model it started with, so requests in flight finish on the old model and none fails.

    POST /predict   one record or a list -> probabilities, with the model version that scored them
    POST /explain   the same body -> each record's SHAP attributions per feature, from the
                    served version (shared/explain.py)
    GET  /health    "ok"; "degraded" (still serving) when MLflow has been unreachable for
                    `degraded_after_failed_polls` polls in a row, or the prediction store is
                    unreachable, with the reason; "no_model" until a champion exists
    GET  /model     name, version, alias, run id and data version of the served model
    GET  /docs      the API docs, served offline
    GET  /metrics   Prometheus metrics (shared/telemetry.py), and the prediction log's counts

Requests that arrive while a batch is being scored wait and are scored together in the next
batch (adaptive micro-batching: no added delay when idle, far fewer model calls under load).
Every prediction goes to the prediction store through a buffer written in batches.
"""

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx
import numpy as np
import pandas as pd
import uvicorn
from fastapi import FastAPI, HTTPException
from mlflow import MlflowClient
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from threadpoolctl import threadpool_limits

from level1_ct import registry
from level1_ct.prediction_log import PredictionLog
from shared.api import (
    RequestLimits,
    add_predict,
    churn_probabilities,
    predict_body,
    responses,
)
from shared.evaluate import THRESHOLD
from shared.explain import Explainer, explain_records
from shared.keepalive import SERVER_KEEP_ALIVE_SECONDS
from shared.schema import FEATURE_NAMES, ID, MODEL_NAME, example_record
from shared.telemetry import ModelFacts, Telemetry, TelemetrySettings

# Fail fast when MLflow is down: the service keeps its model and says "degraded" instead of
# hanging in the client's retries (minutes by default). One retry, sent at once (urllib3
# waits only before a second one): MLflow's client pools connections with no idle limit, and
# a request that went out as the server (or a proxy) closed its connection fails with
# `RemoteDisconnected` before any answer; the retry takes a new connection. Its requests
# here are GETs.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

log = logging.getLogger("level1.service")


class ServiceSettings(RequestLimits, TelemetrySettings):
    """Settings of the level-1 service, from L1_SERVE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="L1_SERVE_", frozen=True)

    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", validation_alias="MLFLOW_TRACKING_URI"
    )
    prediction_store_url: str = Field(
        "sqlite:///var/level1/predictions.db", validation_alias="PREDICTION_STORE_URL"
    )
    model_name: str = Field(MODEL_NAME, validation_alias="MODEL_NAME")
    alias: str = registry.CHAMPION
    host: str = "127.0.0.1"
    port: int = 8001
    poll_seconds: float = 5.0  # how often the alias is checked
    # /health says "degraded" once this many polls in a row could not reach the registry:
    # one failed poll is a blip, not an outage (the model keeps serving either way).
    degraded_after_failed_polls: int = Field(3, ge=1)
    keep_alive_seconds: int = SERVER_KEEP_ALIVE_SECONDS  # idle connections kept open
    log_flush_seconds: float = 1.0  # how often buffered predictions are written
    max_batch_rows: int = 2048  # rows scored in one model call
    # OpenMP threads per model call. One batch is scored at a time, and on a small machine
    # extra OpenMP threads spin on cores the event loop needs: 1 doubled throughput on 2 cores.
    model_threads: int = 1


@cache
def get_settings() -> ServiceSettings:
    return ServiceSettings()


@dataclass(frozen=True)
class Served:
    """A loaded registry version: what /predict scores with and /model shows."""

    ref: registry.ModelRef
    pipeline: Any
    loaded_at: str


class ModelFollower:
    """Keeps the version behind the alias loaded; swaps when the alias moves."""

    def __init__(self, settings: ServiceSettings, drop_when_unset: bool = False):
        self.settings = settings
        # The champion is kept when its alias vanishes (keep serving); level 2's canary arm
        # is dropped when CD removes its alias (the rollout is over).
        self.drop_when_unset = drop_when_unset
        self.client = MlflowClient(settings.mlflow_tracking_uri)
        self.current: Served | None = None
        self.problem: str | None = "no champion loaded yet"
        self.failed_polls = 0  # registry polls in a row that could not reach it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Look the alias up once; load and swap if it points elsewhere. True if swapped."""
        try:
            ref = registry.lookup(self.client, self.settings.model_name, self.settings.alias)
            served = self.current.ref.version if self.current else None
            pipeline = None
            if ref is not None and ref.version != served:
                pipeline = registry.load_model(ref, self.settings.mlflow_tracking_uri)
        except Exception as error:  # keep serving what we have; /health says why, in time
            self._poll_failed(error)
            return False
        self.failed_polls = 0
        if ref is None:
            if self.drop_when_unset and self.current is not None:
                log.warning("alias '%s' removed: unloading its model", self.settings.alias)
                self.current = None
            self.problem = (
                f"no version of '{self.settings.model_name}' has alias "
                f"'{self.settings.alias}' yet: run the training pipeline"
            )
            return False
        if pipeline is None:  # the alias has not moved
            self.problem = None
            return False
        try:  # a model's first call pays its lazy setup: here, not in a client's request
            pipeline.predict_proba(pd.DataFrame([example_record()], columns=[*FEATURE_NAMES, ID]))
        except Exception as error:
            self.problem = f"version {ref.version} cannot score: {type(error).__name__}: {error}"
            log.warning(self.problem)
            return False
        old = self.current.ref.version if self.current else None
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.current = Served(ref, pipeline, now)  # the swap: one reference assignment
        self.problem = None
        log.warning("now serving %s version %s (was %s)", ref.name, ref.version, old)
        return True

    def _poll_failed(self, error: Exception) -> None:
        """A poll that could not reach the registry: /health reports it (as the problem) once
        `degraded_after_failed_polls` polls in a row failed, or at once with no model."""
        self.failed_polls += 1
        reason = (
            f"cannot reach the model registry at {self.settings.mlflow_tracking_uri}: "
            + f"{type(error).__name__}: {error}".splitlines()[0][:300]
        )
        limit = self.settings.degraded_after_failed_polls
        log.warning("registry poll failed (%d in a row; degraded from %d): %s",
                    self.failed_polls, limit, reason)  # fmt: skip
        if self.current is None or self.failed_polls >= limit:
            self.problem = reason

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            self.check()

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


@dataclass
class _Waiting:
    rows: list[dict[str, Any]]
    done: asyncio.Future


class MicroBatcher:
    """Scores the rows of all waiting requests in one model call, one call at a time.

    The call runs in the event loop itself: requests that arrive meanwhile wait in the
    socket and make the next batch. A scoring thread bought nothing here: scikit-learn's
    Python holds the GIL, so the loop waited for it anyway, and the hand-offs between the
    two threads widened the latency tail (p99 at 16 connections on 2 cores, 2026-11-28:
    23-24 ms in three of four runs inline, 29-33 ms in all four with a thread).
    """

    def __init__(self, follower: ModelFollower, max_rows: int, model_threads: int):
        self.follower = follower
        self.max_rows = max_rows
        self.model_threads = model_threads
        self.queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    async def score(self, rows: list[dict[str, Any]]) -> tuple[Served, np.ndarray]:
        waiting = _Waiting(rows, asyncio.get_running_loop().create_future())
        await self.queue.put(waiting)
        return await waiting.done

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            n = len(batch[0].rows)
            while not self.queue.empty() and n < self.max_rows:
                batch.append(self.queue.get_nowait())
                n += len(batch[-1].rows)
            served = self.follower.current  # every request of this batch uses this model
            try:
                if served is None:
                    raise LookupError(self.follower.problem)
                frame = pd.DataFrame(
                    [row for w in batch for row in w.rows], columns=[*FEATURE_NAMES, ID]
                )
                probabilities = churn_probabilities(served.pipeline, frame)
            except Exception as error:
                for w in batch:
                    if not w.done.done():  # a client that went away has a cancelled future
                        w.done.set_exception(error)
                continue
            start = 0
            for w in batch:
                if not w.done.done():
                    w.done.set_result((served, probabilities[start : start + len(w.rows)]))
                start += len(w.rows)

    def start(self) -> None:
        # OpenMP threads per model call, for the thread that scores: the event loop's
        threadpool_limits(self.model_threads, "openmp")
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()


def create_app(
    settings: ServiceSettings, scorer: Callable[[MicroBatcher], Any] | None = None
) -> FastAPI:
    """The level-1 service for `models:/<model_name>@<alias>`.

    `scorer` wraps the micro-batcher of that alias in something with the same `start`,
    `stop` and `score` (level 2's production service routes a canary share through it); if
    it has `answering(rows)`, the version that answers these customers instead of the alias's
    (level 2's candidate, for the customers of its arm), /explain explains that version."""
    follower = ModelFollower(settings)
    prediction_log = PredictionLog(settings.prediction_store_url, settings.log_flush_seconds)
    batcher = MicroBatcher(follower, settings.max_batch_rows, settings.model_threads)
    batcher = scorer(batcher) if scorer else batcher

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(follower.start)
        prediction_log.start()
        batcher.start()
        yield
        follower.stop()
        await batcher.stop()
        await asyncio.to_thread(prediction_log.close)

    app = FastAPI(
        title="Churn prediction service (level 1)",
        description="Serves the registry's champion and follows it. " + __doc__.split("\n\n")[0],
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.follower, app.state.prediction_log = follower, prediction_log
    telemetry = app.state.telemetry = Telemetry(settings.metrics)
    telemetry.serving(settings.alias, lambda: model_facts(follower.current))
    telemetry.registry.register(_PredictionLogCounts(prediction_log))
    Body = predict_body(settings.max_records)

    async def answer(body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Score a validated /predict body, log it, and answer it."""
        records = body if isinstance(body, list) else [body]
        rows = [r.model_dump() for r in records]
        try:
            served, probabilities = await batcher.score(rows)
        except LookupError as missing:
            raise HTTPException(status_code=503, detail=f"no model loaded: {missing}") from None
        telemetry.answered(served.ref.alias, probabilities)
        request_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        prediction_log.record([
            {**row, "request_id": request_id, "predicted_at": now, "model_name": served.ref.name,
             "model_version": served.ref.version, "probability": float(p), "churn": bool(p >= THRESHOLD)}
            for row, p in zip(rows, probabilities, strict=True)
        ])  # fmt: skip
        # Built as JSON directly: the response model documents it; validating our own
        # output again would cost more than scoring the record.
        content = {
            "model_name": served.ref.name,
            "model_version": served.ref.version,
            "predictions": [
                {
                    ID: row[ID],
                    "churn_probability": round(float(p), 6),
                    "churn": bool(p >= THRESHOLD),
                }
                for row, p in zip(rows, probabilities, strict=True)
            ],
        }
        return 200, content, {"X-Request-ID": request_id}

    explainers = Explainers()

    answering = getattr(batcher, "answering", lambda rows: None)

    async def explain(body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Explain a validated /explain body with the version that answers its customers
        (shared/explain.py)."""
        served = follower.current
        if served is None:
            raise HTTPException(status_code=503, detail=f"no model loaded: {follower.problem}")
        rows = [r.model_dump() for r in (body if isinstance(body, list) else [body])]
        served = answering(rows) or served
        explainer = await asyncio.to_thread(explainers.of, served)
        found = await asyncio.to_thread(explain_records, explainer, rows)
        return (
            200,
            {"model_name": served.ref.name, "model_version": served.ref.version, **found},
            {},
        )

    add_predict(app, Body, answer, settings.max_body_bytes, explain)
    telemetry.add_metrics(app)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and what is wrong, if anything: status "ok", "degraded" or "no_model"."""
        served = follower.current
        problems = [p for p in (follower.problem, _store_problem(prediction_log)) if p]
        if served is None:
            return {"status": "no_model", "detail": "; ".join(problems)}
        status = {"status": "degraded" if problems else "ok", "model_version": served.ref.version}
        return {**status, "detail": "; ".join(problems)} if problems else status

    @app.get("/model", responses=responses(503))
    def model_info() -> dict[str, Any]:
        """The served version: name, version, alias, run id, data version, when loaded."""
        served = follower.current
        if served is None:
            raise HTTPException(status_code=503, detail=f"no model loaded: {follower.problem}")
        return {
            **served.ref.to_dict(),
            "loaded_at": served.loaded_at,
            "tracking_uri": settings.mlflow_tracking_uri,
            "checked_every_seconds": settings.poll_seconds,
        }

    return app


class Explainers:
    """An explainer per served version, built on first use: the champion's, and at level 2
    the candidate's too (the least recently used goes when a third is built)."""

    KEEP = 2  # versions explained at once: a champion and a candidate

    def __init__(self):
        self._lock = threading.Lock()
        self._explainers: dict[str, Explainer] = {}  # by version, the newest last

    def of(self, served: Served) -> Explainer:
        with self._lock:
            version = served.ref.version
            found = self._explainers.pop(version, None) or Explainer(served.pipeline)
            self._explainers[version] = found  # the most recently used last
            while len(self._explainers) > self.KEEP:
                del self._explainers[next(iter(self._explainers))]
            return found


def model_facts(served: Served | None) -> ModelFacts | None:
    """What /metrics says of a served version (its age: since it was registered)."""
    if served is None:
        return None
    return ModelFacts(served.ref.name, served.ref.version, served.ref.registered_at)


class _PredictionLogCounts(Collector):
    """The prediction log's rows, read when Prometheus scrapes."""

    def __init__(self, prediction_log: PredictionLog):
        self.log = prediction_log

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("churn_prediction_log_pending",
                                "Predictions waiting to be written to the store", value=self.log.pending)  # fmt: skip
        yield CounterMetricFamily("churn_prediction_log_written",
                                  "Predictions written to the store", value=self.log.written)  # fmt: skip
        yield CounterMetricFamily("churn_prediction_log_dropped",
                                  "Predictions dropped while the store was unreachable", value=self.log.dropped)  # fmt: skip


def _store_problem(prediction_log: PredictionLog) -> str | None:
    if prediction_log.last_error:
        return (
            f"prediction store unreachable ({prediction_log.pending} predictions buffered): "
            f"{prediction_log.last_error}"
        )
    if prediction_log.dropped:
        return f"{prediction_log.dropped} predictions dropped while the store was unreachable"
    return None


def served_version(url: str) -> str | None:
    """The model version the service at `url` answers with now (None: no model, or no
    answer). What demos, CD and tests wait on."""
    try:
        response = httpx.get(f"{url}/model", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json()["version"] if response.status_code == 200 else None


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # No access log: the prediction store records every request already, and a log line per
    # request cost more CPU than scoring it under load.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False,
                timeout_keep_alive=settings.keep_alive_seconds)  # fmt: skip


if __name__ == "__main__":
    main()
