"""Level 2's production service: level 1's service with a canary arm.

Level 1's service serves `champion` and follows it. Here, while CD rolls a candidate out, the
registry alias `canary` points at it: the service loads it as a second arm and sends a share
of live requests (`canary_share`) to it. Each arm counts its requests, errors, latency and
predicted probabilities since the canary version appeared; CD reads them at `GET /rollout`
and promotes or rolls back (level2_cicd/rollout.py decides).

Each request goes to the canary by chance (`canary_split="random"`: independent samples, as
the rollout rule's allowance for chance assumes), or by a stable hash of its first record's
customer id (`"customer"`, `canary_arm`: what `make compare` uses, so a replay splits the
same way on every run). A canary request that fails is counted against the canary and answered by the champion:
clients never see the canary's errors, only (at worst) its latency, and only for its share.

    GET  /rollout            the arms' counters (open, like /health)
    GET  /metrics            level 1's metrics, with the canary arm's model and answers, and
                             churn_arm_requests_total{arm,outcome} (a failed canary request
                             is answered by the champion)
    POST /admin/fault        inject errors or delay into the canary arm (needs X-API-Key):
                             the workshop's "watch a canary roll back" exercise
    and level 1's /predict, /health, /model, /docs

    python -m level2_cicd.service      (settings: L2_SERVE_* and level 1's MLFLOW_TRACKING_URI,
                                        PREDICTION_STORE_URL, MODEL_NAME)
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import threading
import time
import zlib
from collections import deque
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Security
from fastapi.security import APIKeyHeader
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from level1_ct.service import (
    MicroBatcher,
    ModelFollower,
    Served,
    ServiceSettings,
    create_app,
    model_facts,
)
from level2_cicd.names import CANARY
from level2_cicd.rollout import BINS, bin_of
from shared.api import BODY_REFUSALS, responses
from shared.schema import ID

log = logging.getLogger("level2.service")


class ProductionSettings(ServiceSettings):
    """Level 1's service settings, read from L2_SERVE_*, and the canary's."""

    model_config = SettingsConfigDict(env_prefix="L2_SERVE_", frozen=True)

    canary_share: float = Field(0.2, ge=0, le=1)  # of live requests, while a canary is loaded
    canary_split: Literal["random", "customer"] = "random"  # how a request's arm is chosen
    api_key: SecretStr | None = None  # for /admin/*; unset: the admin endpoints refuse


class Fault(BaseModel):
    """What to inject into the canary arm: a share of failing requests, a delay on each."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as strict as /predict's records

    error_rate: float = Field(0.0, ge=0, le=1)
    delay_ms: float = Field(0.0, ge=0, le=10_000)


class ArmCounter:
    """One arm's figures since the current canary version appeared."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=5000)
        self.histogram = [0] * BINS

    def count(self, started: float, probabilities: np.ndarray | None) -> None:
        self.requests += 1
        if probabilities is None:
            self.errors += 1
            return
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        for p in probabilities:
            self.histogram[bin_of(p)] += 1

    def snapshot(self) -> dict[str, Any]:
        p50, p95 = np.percentile(self.latencies_ms, [50, 95]) if self.latencies_ms else (0, 0)
        return {"requests": self.requests, "errors": self.errors, "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2), "histogram": list(self.histogram)}  # fmt: skip


def canary_arm(customer_id: str, share: float) -> bool:
    """Does the canary answer this customer (split "customer")? A stable hash of the id (not
    Python's salted `hash`) puts `share` of the customers on the canary, the same ones on
    every run."""
    return zlib.crc32(customer_id.encode()) % 10_000 < round(share * 10_000)


class CanaryRouter:
    """Routes `canary_share` of requests to the canary arm when one is loaded."""

    def __init__(self, settings: ProductionSettings, champion: MicroBatcher):
        self.champion = champion
        canary_settings = settings.model_copy(update={"alias": CANARY})
        self.follower = ModelFollower(canary_settings, drop_when_unset=True)
        self.canary = MicroBatcher(self.follower, settings.max_batch_rows, settings.model_threads)
        self.share, self.split = settings.canary_share, settings.canary_split
        self.fault = Fault()
        self.version: str | None = None  # the canary version the counters are for
        self.since: str | None = None
        self.arms = {"champion": ArmCounter(), "canary": ArmCounter()}
        self.outcomes: Counter | None = None  # each arm's requests, for /metrics

    def _count(self, arm: str, started: float, probabilities: np.ndarray | None) -> None:
        self.arms[arm].count(started, probabilities)
        if self.outcomes is not None:
            self.outcomes.labels(arm, "error" if probabilities is None else "ok").inc()

    def start(self) -> None:
        self.champion.start()
        self.canary.start()
        # The canary's alias is looked up in the background: no canary is the usual case.
        threading.Thread(target=self.follower.start, name="canary-follower", daemon=True).start()

    async def stop(self) -> None:
        self.follower.stop()
        await self.canary.stop()
        await self.champion.stop()

    def _new_window(self, canary: Served | None) -> None:
        version = canary.ref.version if canary else None
        if version is not None and version != self.version:
            self.version, self.since = version, datetime.now(UTC).isoformat(timespec="seconds")
            self.arms = {"champion": ArmCounter(), "canary": ArmCounter()}
            log.warning("canary version %s: %.0f%% of requests", version, self.share * 100)

    async def score(self, rows: list[dict[str, Any]]) -> tuple[Served, np.ndarray]:
        canary = self.follower.current
        self._new_window(canary)
        if canary is not None and self._to_canary(rows[0].get(ID)):
            started = time.perf_counter()
            try:
                if self.fault.delay_ms:
                    await asyncio.sleep(self.fault.delay_ms / 1000)
                if random.random() < self.fault.error_rate:
                    raise RuntimeError("injected fault")
                served, probabilities = await self.canary.score(rows)
            except Exception as error:
                self._count("canary", started, None)
                log.warning("canary failed (the champion answers): %s", error)
            else:
                self._count("canary", started, probabilities)
                return served, probabilities
        started = time.perf_counter()
        served, probabilities = await self.champion.score(rows)
        self._count("champion", started, probabilities)
        return served, probabilities

    def _to_canary(self, customer_id: str | None) -> bool:
        if self.split == "customer" and customer_id:
            return canary_arm(customer_id, self.share)
        return random.random() < self.share

    def rollout(self) -> dict[str, Any]:
        canary = self.follower.current
        return {
            "canary_version": canary.ref.version if canary else None,
            "counted_version": self.version,
            "since": self.since,
            "share": self.share,
            "fault": self.fault.model_dump(),
            **{arm: counter.snapshot() for arm, counter in self.arms.items()},
        }


def create_production_app(settings: ProductionSettings) -> FastAPI:
    router: CanaryRouter | None = None

    def with_canary(champion: MicroBatcher) -> CanaryRouter:
        nonlocal router
        router = CanaryRouter(settings, champion)
        return router

    app = create_app(settings, scorer=with_canary)
    app.title = "Churn prediction service (level 2: production, with a canary arm)"
    app.description = "Level 1's service with a canary arm. " + __doc__.split("\n\n")[0]
    assert router is not None
    app.state.router = router
    telemetry = app.state.telemetry
    telemetry.serving(CANARY, lambda: model_facts(router.follower.current))
    if telemetry.enabled:
        router.outcomes = Counter(
            "churn_arm_requests", "Requests each arm took, by outcome (ok, error)",
            ["arm", "outcome"], registry=telemetry.registry,
        )  # fmt: skip

    # Declared as a security scheme: /docs has an "Authorize" button, and the document says
    # which routes need the key.
    api_key = APIKeyHeader(
        name="X-API-Key", auto_error=False, description="production's admin key: L2_SERVE_API_KEY"
    )

    def admin(key: str | None) -> None:
        if settings.api_key is None:
            raise HTTPException(403, detail="admin endpoints are off: set L2_SERVE_API_KEY")
        if key is None or not secrets.compare_digest(key, settings.api_key.get_secret_value()):
            raise HTTPException(401, detail="missing or wrong X-API-Key header")

    @app.get("/rollout")
    def rollout() -> dict[str, Any]:
        """The canary and champion arms' counters since the canary version appeared."""
        return router.rollout()

    @app.post("/admin/fault", responses=responses(401, 403, *BODY_REFUSALS))
    def inject(fault: Fault, key: str | None = Security(api_key)) -> dict[str, Any]:
        """Make the canary arm fail or slow down (a drill); {} clears it."""
        admin(key)
        router.fault = fault
        log.warning("canary fault set: %s", fault)
        return {"fault": fault.model_dump()}

    return app


def main() -> None:
    settings = ProductionSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_production_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False,
                timeout_keep_alive=settings.keep_alive_seconds)  # fmt: skip


if __name__ == "__main__":
    main()
