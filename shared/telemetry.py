"""Prometheus metrics of every level's prediction service: the same names at every level,
from prometheus_client (nothing hand-formatted), on a registry of the service's own.

    GET /metrics   Prometheus' text format (for Prometheus, so not in the OpenAPI document)

    churn_http_requests_total{route,method,status}   requests answered (411, 413, 422 too)
    churn_http_request_duration_seconds{route}       how long each took, as a histogram
    churn_http_requests_in_flight                    requests being answered now
    churn_model_info{arm,name,version}               1 for the model each arm serves
    churn_model_loaded{arm}                          1 while the arm has a model, else 0
    churn_model_age_seconds{arm}                     since the served model was trained
    churn_probability{arm}                           the churn probabilities answered

`route` is the route's path, or "unmatched" for any other path (a fuzzer's or a scanner's
paths cannot grow the series without end). The arm is "champion" at every level (level 0's is
the handed-over file) and "canary" for level 2's second arm. A level adds its own metrics to
`Telemetry.registry` (level 1: the prediction log's; level 2: each arm's requests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic_settings import BaseSettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
# Seconds: a scored record takes about a millisecond, a cold or overloaded one far more
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class TelemetrySettings(BaseSettings):
    """Every service's telemetry switch, read under the service's prefix (L0_SERVE_METRICS,
    L1_SERVE_METRICS, L2_SERVE_METRICS). Off, nothing is measured and /metrics is a 404: what
    `make bench` compares with, to print what the measuring costs."""

    metrics: bool = True


@dataclass(frozen=True)
class ModelFacts:
    """What /metrics says of an arm's model."""

    name: str
    version: str
    trained_at: float | None  # Unix seconds; None when unknown


def iso_seconds(timestamp: str | None) -> float | None:
    """An ISO 8601 time (a model card's `trained_at`) as Unix seconds."""
    try:
        return datetime.fromisoformat(timestamp).timestamp() if timestamp else None
    except ValueError:
        return None


class _Models(Collector):
    """The arms' models, read when Prometheus scrapes (an age is computed then, not stored)."""

    def __init__(self, arms: dict[str, Callable[[], ModelFacts | None]]):
        self.arms = arms

    def collect(self) -> Iterable[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "churn_model_info", "The model each arm serves (1)", labels=["arm", "name", "version"]
        )
        loaded = GaugeMetricFamily(
            "churn_model_loaded", "1 while the arm has a model loaded, else 0", labels=["arm"]
        )
        age = GaugeMetricFamily(
            "churn_model_age_seconds", "Seconds since the arm's model was trained", labels=["arm"]
        )
        now = time.time()
        for arm, facts in self.arms.items():
            model = facts()
            loaded.add_metric([arm], 0 if model is None else 1)
            if model is None:
                continue
            info.add_metric([arm, model.name, model.version], 1)
            if model.trained_at is not None:
                age.add_metric([arm], now - model.trained_at)
        yield from (info, loaded, age)


class Telemetry:
    """One service's metrics: `add_metrics(app)` serves them, `answered` counts answers."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry()
        self.arms: dict[str, Callable[[], ModelFacts | None]] = {}
        self.registry.register(_Models(self.arms))
        self.requests = Counter(
            "churn_http_requests", "HTTP requests answered, by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "churn_http_request_duration_seconds", "Time to answer an HTTP request, by route",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "churn_http_requests_in_flight", "HTTP requests being answered", registry=self.registry
        )
        self.probability = Histogram(
            "churn_probability", "Churn probabilities answered, by arm",
            ["arm"], buckets=PROBABILITY_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def serving(self, arm: str, facts: Callable[[], ModelFacts | None]) -> None:
        """Report `arm`'s model as `facts()` says at each scrape (None: no model)."""
        self.arms[arm] = facts

    def answered(self, arm: str, probabilities: Iterable[float]) -> None:
        if not self.enabled:
            return
        histogram = self.probability.labels(arm)
        for p in probabilities:
            histogram.observe(float(p))

    def add_metrics(self, app: FastAPI) -> None:
        """Count every request the app answers (add it after the app's other middleware, so
        that it sees their refusals too), and serve GET /metrics; unless disabled."""
        if not self.enabled:
            return
        app.add_middleware(_Measured, telemetry=self, app_routes=lambda: app.routes)

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Measured:
    """A plain ASGI middleware (cheaper than Starlette's `@app.middleware`): each request's
    route, status and time."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, app_routes: Callable[[], list]):
        self.app, self.telemetry, self.app_routes = app, telemetry, app_routes
        self.routes: frozenset[str] | None = None  # known once the app has all its routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.routes is None:
            self.routes = frozenset(getattr(r, "path", "") for r in self.app_routes())
        route = scope["path"] if scope["path"] in self.routes else UNMATCHED
        status = 500  # what the server answers when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        telemetry = self.telemetry
        telemetry.in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            telemetry.in_flight.dec()
            telemetry.latency.labels(route).observe(time.perf_counter() - started)
            telemetry.requests.labels(route, scope["method"], str(status)).inc()
