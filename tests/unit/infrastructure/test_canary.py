"""Level 2's production service routes a candidate by its rollout kind and counts each arm:
with stand-in models (no MLflow), how requests are split (canary, A/B), what a shadow scores
in its own process and that no customer gets its answers, what a failing candidate does to
clients, and who may inject a fault."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter
from sklearn.dummy import DummyClassifier

from level1_ct.registry import ModelRef
from level1_ct.service import Served
from level2_cicd.service import (
    Fault,
    ProductionSettings,
    RolloutRouter,
    canary_arm,
    create_production_app,
)
from shared.schema import ID, example_record
from shared.waiting import wait_until

UNREACHABLE = {"mlflow_tracking_uri": "http://127.0.0.1:9"}


def constant(probability: float) -> DummyClassifier:
    """A fitted model that gives every record `probability` of churn (picklable: the shadow's
    process gets it)."""
    n = 100
    churners = round(probability * n)
    return DummyClassifier(strategy="prior").fit(
        np.zeros((n, 1)), [1] * churners + [0] * (n - churners)
    )


class StandIn:
    """Answers like a MicroBatcher, with a fixed probability and version."""

    def __init__(self, version: str, probability: float, kind: str | None = None):
        tags = {"rollout_kind": kind} if kind else {}
        ref = ModelRef("churn", version, "run", "data", tags=tags)
        self.served = Served(ref, constant(probability), "now")
        self.probability = probability

    async def score(self, rows):
        return self.served, np.full(len(rows), self.probability)


def router(
    share: float, canary_version: str | None = "2", split: str = "random", kind: str | None = None,
    **settings,
) -> RolloutRouter:  # fmt: skip
    settings = ProductionSettings(canary_share=share, canary_split=split, **UNREACHABLE, **settings)
    routed = RolloutRouter(settings, StandIn("1", 0.15))
    routed.canary = StandIn("2", 0.85)
    if canary_version:
        routed.follower.current = StandIn(canary_version, 0.85, kind).served
    return routed


def send(routed: RolloutRouter, n: int) -> list[str]:
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


def customers_of(routed: RolloutRouter, customers: list[str]) -> list[str]:
    """Each customer's request (a full record), and the version that answered it."""

    async def all_requests():
        return [
            (await routed.score([{**example_record(), ID: c}]))[0].ref.version for c in customers
        ]

    return asyncio.run(all_requests())


@pytest.fixture
def shadowing():
    """A router whose candidate (0.85 for everyone) is a shadow; its process stopped after."""
    routed = router(share=0.3, kind="shadow", shadow_flush_seconds=0.02)
    routed.shadow.start()
    yield routed
    routed.shadow.stop()


def counted(routed: RolloutRouter, requests: int) -> dict:
    """/rollout's figures once the shadow has counted `requests` copies."""
    return wait_until(lambda: (f := routed.rollout())["canary"]["requests"] == requests and f,
                      30, f"the shadow process to count {requests} copies")  # fmt: skip


def test_a_shadow_scores_a_copy_of_every_request_in_its_process_and_nobody_gets_its_answers(
    shadowing,
):  # one shadow process for the three parts: each costs its start (~1 s of imports)
    customers = [f"c{i:04d}" for i in range(300)]
    versions = customers_of(shadowing, customers)
    assert set(versions) == {"1"}  # the champion answered everyone
    figures = counted(shadowing, 300)
    shadow = figures["canary"]
    assert figures["kind"] == "shadow" and figures["share"] == 0.0
    assert figures["exposed_customers"] == 0 and shadow["customers"] == 300
    assert shadow["errors"] == 0 and shadow["histogram"][8] == 300  # its 0.85s, counted
    # 0.15 (champion: stays) against 0.85 (shadow: churns): every decision would change
    assert shadow["disagreements"] == 300
    assert figures["champion"]["requests"] == 300 and figures["champion"]["customers"] == 300
    assert shadow["p95_ms"] > 0  # its model calls, timed in its process

    # Failing and slow: counted against it; production never waits for it
    shadowing.fault = Fault(error_rate=1.0, delay_ms=50)
    assert set(customers_of(shadowing, [f"f{i}" for i in range(40)])) == {"1"}
    figures = counted(shadowing, 340)
    assert figures["canary"]["errors"] == 40 and figures["exposed_customers"] == 0
    assert figures["champion"]["p95_ms"] < 50  # its delay stayed in the shadow's process

    # The process dies: the copies in flight count as dropped, with the reason; the next
    # flush starts a new process, which counts from 0 (the figures say why); production's
    # counter of the shadow's requests never goes back (it would raise)
    shadowing.fault = Fault()
    shadowing.shadow.outcomes = outcomes = Counter(
        "arm_requests", "", ["arm", "outcome"], registry=CollectorRegistry()
    )
    stopped = shadowing.shadow._process
    stopped.kill()
    stopped.wait()
    customers_of(shadowing, ["d1", "d2", "d3"])
    figures = wait_until(lambda: (f := shadowing.rollout())["canary"]["dropped"] == 3 and f, 30,
                         "the copies in flight counted as dropped")  # fmt: skip
    assert "the shadow process stopped" in figures["canary"]["problem"]
    customers_of(shadowing, ["n1"])
    figures = counted(shadowing, 1)  # the new process's first copy
    assert figures["canary"]["dropped"] == 3 and outcomes.labels("shadow", "ok")._value.get() == 1

    # The alias goes (a rollback, or the promotion): the process ends
    process = shadowing.shadow._process
    assert process is not None and process is not stopped and process.poll() is None
    shadowing.follower.current = None
    assert customers_of(shadowing, ["c3"]) == ["1"]
    wait_until(lambda: process.poll() is not None, 30, "the shadow process to end")


def test_ab_splits_customers_by_their_id_and_counts_those_exposed():
    routed = router(share=0.05, kind="ab", ab_share=0.5)
    customers = [f"c{i:05d}" for i in range(2000)]
    first, again = customers_of(routed, customers), customers_of(routed, customers)
    assert first == again == ["2" if canary_arm(c, 0.5) else "1" for c in customers]
    assert 900 <= first.count("2") <= 1100  # half of them, give or take the hash
    figures = routed.rollout()
    assert figures["kind"] == "ab" and figures["share"] == 0.5
    assert figures["exposed_customers"] == figures["canary"]["customers"] == first.count("2")
    assert figures["champion"]["customers"] == first.count("1")


def test_the_kind_is_the_version_tag_and_an_unknown_one_is_a_canary():
    tags = (("canary", "canary"), ("ab", "ab"), ("blue-green", "canary"), (None, "canary"))
    for tag, kind in tags:
        routed = router(share=1.0, kind=tag, ab_share=1.0)
        assert customers_of(routed, ["c1"]) == ["2"]  # every customer's share is the candidate's
        assert routed.rollout()["kind"] == kind


def test_the_champions_customers_are_counted_only_during_a_rollout():
    routed = router(share=0.5, canary_version=None)  # no candidate: the usual day
    customers_of(routed, [f"c{i}" for i in range(50)])
    assert routed.rollout()["champion"]["customers"] == 0  # no set growing without end
    assert routed.rollout()["champion"]["requests"] == 50
