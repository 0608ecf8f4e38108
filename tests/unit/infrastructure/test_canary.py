"""Level 2's production service routes a canary share and counts each arm: with stand-in
models (no MLflow), how requests are split, what a failing canary does to clients, and who
may inject a fault."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi.testclient import TestClient

from level1_ct.registry import ModelRef
from level1_ct.service import Served
from level2_cicd.service import (
    CanaryRouter,
    Fault,
    ProductionSettings,
    canary_arm,
    create_production_app,
)
from shared.schema import ID

UNREACHABLE = {"mlflow_tracking_uri": "http://127.0.0.1:9"}


class StandIn:
    """Answers like a MicroBatcher, with a fixed probability and version."""

    def __init__(self, version: str, probability: float):
        self.served = Served(ModelRef("churn", version, "run", "data"), None, "now")
        self.probability = probability

    async def score(self, rows):
        return self.served, np.full(len(rows), self.probability)


def router(share: float, canary_version: str | None = "2", split: str = "random") -> CanaryRouter:
    settings = ProductionSettings(canary_share=share, canary_split=split, **UNREACHABLE)
    routed = CanaryRouter(settings, StandIn("1", 0.15))
    routed.canary = StandIn("2", 0.85)
    if canary_version:
        routed.follower.current = StandIn(canary_version, 0.85).served
    return routed


def send(routed: CanaryRouter, n: int) -> list[str]:
    async def all_requests():
        return [(await routed.score([{"age": 30}]))[0].ref.version for _ in range(n)]

    return asyncio.run(all_requests())


def test_without_a_canary_every_request_goes_to_the_champion():
    routed = router(share=0.5, canary_version=None)
    assert set(send(routed, 200)) == {"1"}
    figures = routed.rollout()
    assert figures["canary_version"] is None and figures["canary"]["requests"] == 0
    assert figures["champion"]["requests"] == 200


def test_the_canary_gets_its_share_and_each_arm_counts_its_predictions():
    routed = router(share=0.3)
    versions = send(routed, 2000)
    figures = routed.rollout()
    canary, champion = figures["canary"], figures["champion"]
    assert versions.count("2") == canary["requests"] and versions.count("1") == champion["requests"]
    assert 450 <= canary["requests"] <= 750  # 30% of 2000, give or take chance
    assert canary["errors"] == champion["errors"] == 0
    assert canary["histogram"][8] == canary["requests"]  # every 0.85 in the [0.8, 0.9) bin
    assert champion["histogram"][1] == champion["requests"]
    assert figures["counted_version"] == "2" and figures["since"] is not None


def test_split_by_customer_a_customer_stays_on_one_arm_and_the_canary_gets_its_share():
    routed = router(share=0.2, split="customer")

    async def versions_of(customers):
        return [(await routed.score([{ID: c, "age": 30}]))[0].ref.version for c in customers]

    customers = [f"c{i:05d}" for i in range(2000)]
    first, again = asyncio.run(versions_of(customers)), asyncio.run(versions_of(customers))
    assert first == again  # the same customers on the canary, request after request
    assert first == ["2" if canary_arm(c, 0.2) else "1" for c in customers]
    assert 330 <= first.count("2") <= 470  # 20% of 2000 customers, give or take the hash
    assert not any(canary_arm(c, 0.0) for c in customers)
    assert all(canary_arm(c, 1.0) for c in customers)
    # By default each request is an independent draw: one customer meets both arms
    routed = router(share=0.2)
    assert set(asyncio.run(versions_of(["c00001"] * 200))) == {"1", "2"}


def test_a_failing_canary_is_counted_and_its_requests_are_answered_by_the_champion():
    routed = router(share=0.5)
    routed.fault = Fault(error_rate=1.0)
    versions = send(routed, 400)  # no request raised
    figures = routed.rollout()
    assert set(versions) == {"1"}
    assert figures["canary"]["requests"] == figures["canary"]["errors"] > 100
    assert figures["champion"]["requests"] == 400  # the failed canary requests included


def test_a_new_canary_version_starts_a_new_window():
    routed = router(share=1.0)
    send(routed, 50)
    assert routed.rollout()["canary"]["requests"] == 50
    routed.follower.current = StandIn("3", 0.85).served
    send(routed, 5)
    figures = routed.rollout()
    assert figures["counted_version"] == "3" and figures["canary"]["requests"] == 5


def test_only_the_api_key_may_inject_a_fault():
    closed = TestClient(create_production_app(ProductionSettings(**UNREACHABLE)))
    assert closed.post("/admin/fault", json={"error_rate": 0.5}).status_code == 403

    app = create_production_app(ProductionSettings(api_key="s3cret", **UNREACHABLE))
    service = TestClient(app)  # no lifespan: nothing is loaded, the routes answer
    assert service.post("/admin/fault", json={"error_rate": 0.5}).status_code == 401
    wrong = service.post("/admin/fault", json={"error_rate": 0.5}, headers={"X-API-Key": "no"})
    assert wrong.status_code == 401
    bad = service.post("/admin/fault", json={"error_rate": 2}, headers={"X-API-Key": "s3cret"})
    assert bad.status_code == 422 and "error_rate" in bad.text
    good = service.post(
        "/admin/fault", json={"error_rate": 0.5, "delay_ms": 200}, headers={"X-API-Key": "s3cret"}
    )
    assert good.status_code == 200
    assert service.get("/rollout").json()["fault"] == {"error_rate": 0.5, "delay_ms": 200.0}
