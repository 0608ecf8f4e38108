"""The services' scoring (`shared.api.churn_probabilities`) answers what the model gives and
scores late deliveries and complaints riskier: `shared.expectations`' checks, which level 2's
CI runs here (the infrastructure section) and `make compare` runs on a replayed push. A
scoring that answers the probability of staying fails both."""

from __future__ import annotations

from shared.api import churn_probabilities
from shared.expectations import riskier_when_late_and_complaining, serving_matches_the_model


def staying(pipeline, frame):
    """The refactor `make compare` pushes as its bad change: the wrong column."""
    return pipeline.predict_proba(frame)[:, 0]


def test_the_services_scoring_answers_what_the_model_gives(trained, split):
    _, holdout = split
    assert serving_matches_the_model(churn_probabilities, trained.pipeline, holdout) is None
    skew = serving_matches_the_model(staying, trained.pipeline, holdout)
    assert skew is not None and "training/serving skew" in skew


def test_the_services_scoring_answers_more_late_deliveries_and_complaints_riskier(trained):
    assert riskier_when_late_and_complaining(churn_probabilities, trained.pipeline) is None
    inverted = riskier_when_late_and_complaining(staying, trained.pipeline)
    assert inverted is not None and "more late deliveries and complaints" in inverted
