"""How CD chooses a delivery's rollout kind and judges it: the commit's `Rollout:` trailer
(over L2_ROLLOUT, under a delivery by hand), and each kind's rule on production's figures;
for A/B, the labelled decisions of each arm as the prediction store holds them."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from level1_ct import prediction_log
from level1_ct.prediction_log import decision_outcomes, labels, predictions
from level1_ct.settings import PipelineSettings
from level2_cicd.flows.cd import Candidate, judge, rollout_kind
from level2_cicd.report import StepFailed
from level2_cicd.settings import CicdSettings
from shared.schema import DATE, ID, LABEL

AUTHOR = ["-c", "user.name=Learner", "-c", "user.email=learner@example.org"]


def commit(repo: Path, message: str) -> str:
    (repo / "change.txt").write_text(message)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", *AUTHOR, "-C", str(repo), "commit", "-qm", message], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def test_the_commit_trailer_chooses_the_kind_over_the_setting_and_a_delivery_by_hand_over_both(
    tmp_path,
):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    plain = commit(tmp_path, "Reword the gate")
    shadowed = commit(tmp_path, "Refactor the scoring\n\nRisky: watch it first.\n\nRollout: shadow")
    tested = commit(tmp_path, "Widen the search\n\nRollout: canary\nRollout: AB")
    settings = CicdSettings(rollout="canary")
    assert rollout_kind(tmp_path, plain, settings) == "canary"
    assert rollout_kind(tmp_path, plain, CicdSettings(rollout="ab")) == "ab"
    assert rollout_kind(tmp_path, shadowed, settings) == "shadow"
    assert rollout_kind(tmp_path, tested, settings) == "ab"  # the last trailer, any case
    assert rollout_kind(tmp_path, shadowed, settings, override="canary") == "canary"
    unknown = commit(tmp_path, "Swap the colours\n\nRollout: blue-green")
    with pytest.raises(StepFailed, match="'Rollout: blue-green' is not one of canary, shadow, ab"):
        rollout_kind(tmp_path, unknown, settings)


def arm(requests: int, histogram: list[int], disagreements: int = 0) -> dict:
    return {"requests": requests, "errors": 0, "p95_ms": 5.0, "histogram": histogram,
            "disagreements": disagreements}  # fmt: skip


SPREAD = [30, 20, 15, 10, 8, 6, 4, 3, 2, 2]


def figures(candidate: dict) -> dict:
    return {"champion": arm(1000, [10 * n for n in SPREAD]), "canary": candidate,
            "exposed_customers": 0}  # fmt: skip


def judged(kind: str, candidate: dict, store: str = "sqlite://", **since) -> str:
    settings = CicdSettings(rollout_window_seconds=0)  # the window is over at the first look
    pipeline = PipelineSettings(prediction_store_url=store)
    decision = judge(kind, figures(candidate), Candidate("2", ""), time.monotonic(),
                     since.get("since", datetime.now(UTC)), settings, pipeline)  # fmt: skip
    return decision.summary


def test_a_shadow_is_judged_on_the_decisions_it_would_have_changed():
    alike = arm(1000, [10 * n for n in SPREAD], disagreements=30)
    assert judged("shadow", alike).startswith("promote: 1000 shadow requests")
    contrary = arm(1000, [10 * n for n in SPREAD], disagreements=400)
    assert judged("shadow", contrary).startswith("rollback: would change 40.0%")
    # The same figures as a canary: no disagreement is known, the canary is promoted
    assert judged("canary", contrary).startswith("promote: 1000 canary requests")


def store_with(tmp_path: Path, answers: list[tuple[str, str, bool, bool]], at: datetime) -> str:
    """A prediction store holding (version, customer, decided churn, churned) rows."""
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    engine = prediction_log.connect(url)
    with engine.begin() as conn:
        conn.execute(predictions.insert(), [
            {"request_id": str(i), ID: customer, "predicted_at": at, "model_name": "churn",
             "model_version": version, "probability": 0.9 if churn else 0.1, "churn": churn}
            for i, (version, customer, churn, _) in enumerate(answers)
        ])  # fmt: skip
        conn.execute(labels.insert(), [
            {ID: customer, DATE: at.date(), LABEL: churned}
            for _, customer, _, churned in answers if not customer.startswith("unlabelled")
        ])  # fmt: skip
    return url


def test_an_arms_labelled_decisions_are_read_from_the_prediction_store(tmp_path):
    now = datetime.now(UTC)
    answers = [
        ("1", "a", True, True), ("1", "b", False, True), ("1", "c", False, False),
        ("2", "d", True, True), ("2", "unlabelled-e", True, False), ("3", "f", False, True),
    ]  # fmt: skip
    engine = prediction_log.connect(store_with(tmp_path, answers, now))
    earlier = now - timedelta(seconds=1)
    assert decision_outcomes(engine, earlier, "1") == (3, 2)
    assert decision_outcomes(engine, earlier, "2") == (1, 1)
    # The champion's arm: every version but the candidate's (a retrain may promote one)
    assert decision_outcomes(engine, earlier, "2", others=True) == (4, 2)
    assert decision_outcomes(engine, now + timedelta(seconds=1), "1") == (0, 0)  # before it


def test_ab_waits_for_labels_then_rolls_back_a_candidate_whose_decisions_are_worse(tmp_path):
    now = datetime.now(UTC)
    since = now - timedelta(minutes=1)
    few = [("1", f"a{i}", True, True) for i in range(10)]
    assert judged("ab", arm(10, [1] * 10), store_with(tmp_path / "few", few, now),
                  since=since).startswith("wait: ")  # fmt: skip
    # 600 labelled decisions per arm: the champion right on 80 % (two versions of it, a
    # retrain promoted during the test), the candidate on 50 %
    champion = [(str(1 + i % 2 * 2), f"a{i}", True, i % 5 != 0) for i in range(600)]
    candidate = [("2", f"b{i}", True, i % 2 == 0) for i in range(600)]
    store = store_with(tmp_path / "many", champion + candidate, now)
    verdict = judged("ab", arm(600, [60] * 10), store, since=since)
    assert verdict.startswith("rollback: accuracy 50.0% on 600 labelled decisions vs champion "
                              "80.0% on 600: worse")  # fmt: skip
