"""Level 2's production service: level 1's service with a second arm for the candidate.

Level 1's service serves `champion` and follows it. Here, while CD rolls a candidate out, the
registry alias `canary` points at it: the service loads it as a second arm, and the version's
tag `rollout_kind` says what production does with it (level2_cicd/rollout.py judges each):

- **canary**: a share of live requests (`canary_share`) is answered by the candidate; each
  request goes to it by chance (`canary_split="random"`: independent samples, as the rollout
  rule's allowance for chance assumes), or by a stable hash of its first record's customer id
  (`"customer"`, `canary_arm`: what `make compare` uses, so a replay splits the same way on
  every run);
- **shadow**: the champion answers every request; a copy of each goes to the candidate in a
  process of its own, off the response path (level2_cicd/shadow.py). No customer gets its
  answers; CD judges what it would have answered;
- **ab**: customers are split by the stable hash of their id (`ab_share` on the candidate),
  and every answer is logged with its version, so that CD can judge each arm's decisions on
  the labels once they land.

A candidate request that fails is counted against the candidate and answered by the champion:
clients never see the candidate's errors, only (at worst) its latency, and only for its share.
Each arm counts its requests, errors, latency, predicted probabilities and customers since
the candidate version appeared; CD reads them at `GET /rollout`.

    GET  /rollout            the kind, the arms' counters and the customers exposed to the
                             candidate's answers (open, like /health)
    GET  /metrics            level 1's metrics, with the candidate's model and answers,
                             churn_arm_requests_total{arm,outcome} (arm: champion, canary or
                             shadow), and the current rollout's figures per arm:
                             churn_rollout_{requests,errors,latency_p95_seconds,customers,
                             predictions}{arm,...}
    POST /admin/fault        inject errors or delay into the candidate's arm (needs
                             X-API-Key): the workshop's "watch a rollout roll back" exercise
    and level 1's /predict, /explain (the attributions of the version that answers the
    body's customers: the candidate for those of its arm in an A/B test or a canary split by
    customer, the champion otherwise), /health, /model, /docs

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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Security
from fastapi.security import APIKeyHeader
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
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
from level2_cicd.arms import ArmCounter
from level2_cicd.names import CANARY, ROLLOUT_KIND, ROLLOUT_KINDS
from level2_cicd.shadow import ShadowArm
from shared.api import BODY_REFUSALS, responses
from shared.schema import ID

log = logging.getLogger("level2.service")


class ProductionSettings(ServiceSettings):
    """Level 1's service settings, read from L2_SERVE_*, and the canary's."""

    model_config = SettingsConfigDict(env_prefix="L2_SERVE_", frozen=True)

    canary_share: float = Field(0.2, ge=0, le=1)  # of live requests, while a canary is loaded
    canary_split: Literal["random", "customer"] = "random"  # how a request's arm is chosen
    ab_share: float = Field(0.5, ge=0, le=1)  # of customers, during an A/B test
    # The shadow's copies go to its process every this often; more than `shadow_max_pending`
    # waiting requests are dropped (counted), never waited for
    shadow_flush_seconds: float = Field(0.2, gt=0, le=5)
    shadow_max_pending: int = Field(10_000, ge=1)
    api_key: SecretStr | None = None  # for /admin/*; unset: the admin endpoints refuse


class Fault(BaseModel):
    """What to inject into the candidate's arm: a share of failing requests, a delay on each
    (a shadow's delay is its own: production's answer does not wait for it)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as strict as /predict's records

    error_rate: float = Field(0.0, ge=0, le=1)
    delay_ms: float = Field(0.0, ge=0, le=10_000)


def canary_arm(customer_id: str, share: float) -> bool:
    """Does the canary answer this customer (split "customer")? A stable hash of the id (not
    Python's salted `hash`) puts `share` of the customers on the canary, the same ones on
    every run."""
    return zlib.crc32(customer_id.encode()) % 10_000 < round(share * 10_000)


def kind_of(served: Served) -> str:
    """How production rolls this candidate out: its version's `rollout_kind` tag (a version
    registered without one, or with a kind this code does not know, is a canary)."""
    kind = served.ref.tags.get(ROLLOUT_KIND, "canary")
    return kind if kind in ROLLOUT_KINDS else "canary"


class RolloutRouter:
    """Routes requests between the champion and the candidate by the rollout's kind."""

    def __init__(self, settings: ProductionSettings, champion: MicroBatcher):
        self.champion = champion
        candidate_settings = settings.model_copy(update={"alias": CANARY})
        self.follower = ModelFollower(candidate_settings, drop_when_unset=True)
        self.canary = MicroBatcher(
            self.follower, settings.max_batch_rows, settings.model_threads
        )  # fmt: skip
        self.share, self.split, self.ab_share = (
            settings.canary_share, settings.canary_split, settings.ab_share
        )  # fmt: skip
        self.shadow = ShadowArm(settings.shadow_flush_seconds, settings.shadow_max_pending)
        self.fault = Fault()
        self.kind: str | None = None  # of the candidate the counters are for
        self.active = False  # is a candidate loaded (its window open)?
        self.version: str | None = None  # the candidate version the counters are for
        self.since: str | None = None
        self.arms = {"champion": ArmCounter(), "canary": ArmCounter()}
        self.outcomes: Counter | None = None  # each arm's requests, for /metrics

    def _count(
        self, arm: str, started: float, probabilities: np.ndarray | None,
        customers: Iterable[str] = (),
    ) -> None:  # fmt: skip
        self.arms[arm].count((time.perf_counter() - started) * 1000, probabilities, customers)
        if self.outcomes is not None:
            self.outcomes.labels(arm, "error" if probabilities is None else "ok").inc()

    def start(self) -> None:
        self.champion.start()
        self.canary.start()
        self.shadow.start()
        # The candidate's alias is looked up in the background: no candidate is the usual case.
        threading.Thread(target=self.follower.start, name="canary-follower", daemon=True).start()

    async def stop(self) -> None:
        self.follower.stop()
        await asyncio.to_thread(self.shadow.stop)
        await self.canary.stop()
        await self.champion.stop()

    def _new_window(self, candidate: Served | None) -> None:
        """A candidate that appears (a new version, or one back after its alias went) starts
        a window: new counters; one that goes ends it (the counters stay, for CD to read)."""
        if candidate is None:
            if self.active:  # the alias went: this rollout is over
                self.active = False
                self.shadow.unload()
            return
        if self.active and candidate.ref.version == self.version:
            return
        self.active = True
        self.version, self.kind = candidate.ref.version, kind_of(candidate)
        self.since = datetime.now(UTC).isoformat(timespec="seconds")
        self.arms = {"champion": ArmCounter(), "canary": ArmCounter()}
        if self.kind == "shadow":
            self.shadow.load(candidate.pipeline)
            log.warning("shadow version %s: a copy of every request", self.version)
        else:
            self.shadow.unload()
            log.warning("%s version %s: %.0f%% of %s", self.kind, self.version,
                        self.candidate_share * 100,
                        "customers" if self.kind == "ab" else "requests")  # fmt: skip

    @property
    def candidate_share(self) -> float:
        """The share of customers (ab) or requests (canary) the candidate answers."""
        return {"shadow": 0.0, "ab": self.ab_share}.get(self.kind or "canary", self.share)

    async def score(self, rows: list[dict[str, Any]]) -> tuple[Served, np.ndarray]:
        candidate = self.follower.current
        self._new_window(candidate)
        if candidate is not None and self.kind != "shadow" and self._to_candidate(rows[0].get(ID)):
            started = time.perf_counter()
            try:
                if self.fault.delay_ms:
                    await asyncio.sleep(self.fault.delay_ms / 1000)
                if random.random() < self.fault.error_rate:
                    raise RuntimeError("injected fault")
                served, probabilities = await self.canary.score(rows)
            except Exception as error:
                self._count("canary", started, None)
                log.warning("%s failed (the champion answers): %s", self.kind, error)
            else:
                self._count("canary", started, probabilities, (r.get(ID) for r in rows))
                return served, probabilities
        started = time.perf_counter()
        served, probabilities = await self.champion.score(rows)
        # Its customers are counted during a rollout only: the set would grow without end
        during = candidate is not None
        self._count("champion", started, probabilities, (r.get(ID) for r in rows if during))
        if candidate is not None and self.kind == "shadow":
            self.shadow.fault = (self.fault.error_rate, self.fault.delay_ms)
            self.shadow.submit(rows, probabilities)
        return served, probabilities

    def _customer_arm(self, customer_id: str | None) -> bool | None:
        """Is this customer on the candidate's arm, where the split goes by customer (an A/B
        test, or a canary split by customer)? None where chance decides each request."""
        if self.kind == "ab":  # a customer stays on one arm: their outcome judges it
            return bool(customer_id) and canary_arm(customer_id, self.ab_share)
        if self.split == "customer" and customer_id:
            return canary_arm(customer_id, self.share)
        return None

    def _to_candidate(self, customer_id: str | None) -> bool:
        by_customer = self._customer_arm(customer_id)
        return random.random() < self.share if by_customer is None else by_customer

    def answering(self, rows: list[dict[str, Any]]) -> Served | None:
        """The candidate, where it is the arm that answers these rows' customers (the first
        record's id, as `score` routes): /explain explains what they were answered with.
        None, the champion, for a shadow (it answers nobody) and where chance routes each
        request (the champion answers most of them; the answer names its version)."""
        candidate = self.follower.current
        self._new_window(candidate)
        if candidate is None or self.kind == "shadow":
            return None
        return candidate if self._customer_arm(rows[0].get(ID)) else None

    def rollout(self) -> dict[str, Any]:
        candidate = self.follower.current
        self._new_window(candidate)  # a candidate loaded is counted from now, traffic or not
        shadowing = self.kind == "shadow"
        arm = self.shadow.snapshot() if shadowing else self.arms["canary"].snapshot()
        return {
            "kind": self.kind,
            "canary_version": candidate.ref.version if candidate else None,
            "counted_version": self.version,
            "since": self.since,
            "share": self.candidate_share,
            "fault": self.fault.model_dump(),
            "champion": self.arms["champion"].snapshot(),
            "canary": arm,
            # Customers who got one of the candidate's answers (a shadow's: none, ever)
            "exposed_customers": 0 if shadowing else arm["customers"],
        }


class _RolloutFigures(Collector):
    """The current rollout's figures per arm, as /rollout counts them since the candidate
    appeared (gauges: a new candidate starts them again). The candidate's arm is `canary`
    (a canary or an A/B test) or `shadow`; `exposed` says whether its customers got its
    answers."""

    def __init__(self, router: RolloutRouter):
        self.router = router

    def collect(self) -> Iterable[GaugeMetricFamily]:
        figures = self.router.rollout()
        candidate = "shadow" if figures["kind"] == "shadow" else "canary"
        arms = {"champion": figures["champion"], candidate: figures["canary"]}

        def gauge(name: str, text: str, value, labels=("arm",), more=lambda arm: ()):
            family = GaugeMetricFamily(name, text, labels=list(labels))
            for arm, counted in arms.items():
                for extra, number in more(arm) or [((), value(counted))]:
                    family.add_metric([arm, *extra], number)
            return family

        yield gauge("churn_rollout_requests", "Requests each arm took in the current rollout "
                    "(a shadow's: copies)", lambda f: f["requests"])  # fmt: skip
        yield gauge("churn_rollout_errors", "Requests each arm failed in the current rollout",
                    lambda f: f["errors"])  # fmt: skip
        yield gauge("churn_rollout_latency_p95_seconds", "Each arm's p95 latency in the current "
                    "rollout (a shadow's: its model calls)", lambda f: f["p95_ms"] / 1000)  # fmt: skip
        yield gauge(
            "churn_rollout_customers", "Customers each arm answered in the current rollout (a "
            "shadow's: scored); exposed: they got the candidate's answer", None,
            labels=("arm", "exposed"),
            more=lambda arm: [((str(arm == "canary").lower(),), arms[arm]["customers"])],
        )  # fmt: skip
        yield gauge(
            "churn_rollout_predictions", "Each arm's predicted probabilities in the current "
            "rollout, by bin of 0.1 (bin 0: [0, 0.1))", None, labels=("arm", "bin"),
            more=lambda arm: [((str(b),), n) for b, n in enumerate(arms[arm]["histogram"])],
        )  # fmt: skip
        if candidate == "shadow":
            yield GaugeMetricFamily(
                "churn_rollout_shadow_disagreements", "Decisions the shadow would have changed "
                "in the current rollout", value=figures["canary"]["disagreements"],
            )  # fmt: skip


def create_production_app(settings: ProductionSettings) -> FastAPI:
    router: RolloutRouter | None = None

    def with_candidate(champion: MicroBatcher) -> RolloutRouter:
        nonlocal router
        router = RolloutRouter(settings, champion)
        return router

    app = create_app(settings, scorer=with_candidate)
    app.title = "Churn prediction service (level 2: production, with a candidate's arm)"
    app.description = "Level 1's service with a candidate's arm. " + __doc__.split("\n\n")[0]
    assert router is not None
    app.state.router = router
    telemetry = app.state.telemetry
    telemetry.serving(CANARY, lambda: model_facts(router.follower.current))
    if telemetry.enabled:
        router.outcomes = Counter(
            "churn_arm_requests", "Requests each arm took, by outcome (ok, error)",
            ["arm", "outcome"], registry=telemetry.registry,
        )  # fmt: skip
        router.shadow.outcomes = router.outcomes
        telemetry.registry.register(_RolloutFigures(router))

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
        """The rollout's kind and the arms' counters since the candidate version appeared."""
        return router.rollout()

    @app.post("/admin/fault", responses=responses(401, 403, *BODY_REFUSALS))
    def inject(fault: Fault, key: str | None = Security(api_key)) -> dict[str, Any]:
        """Make the candidate's arm fail or slow down (a drill); {} clears it."""
        admin(key)
        router.fault = fault
        log.warning("candidate fault set: %s", fault)
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
