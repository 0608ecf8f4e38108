"""Level 1's training rules (level1_ct/training_rules.py): what the training pipeline and the
replay both decide with. Their parity on a story is tests/integration/test_replay_parity.py."""

from __future__ import annotations

import pytest

from level1_ct import training_rules
from level1_ct.settings import PipelineSettings
from shared.evaluate import evaluate
from shared.validation import ValidationResult, Violation


def test_the_window_is_the_newest_batches_and_needs_two():
    assert training_rules.window([1, 2, 3, 4, 5], 3) == [3, 4, 5]
    assert training_rules.window(["a", "b"], 14) == ["a", "b"]
    with pytest.raises(training_rules.NotEnoughData, match="1 labelled batches: need at least 2"):
        training_rules.window([1, 2, 3], 1)
    with pytest.raises(training_rules.NotEnoughData):
        training_rules.window([1], 14)


def test_the_contract_stops_a_run_naming_each_bad_file_and_its_rule():
    good = ValidationResult(rows=10)
    bad = ValidationResult(rows=10, violations=(Violation("age", "max", "12 rows above 100"),))
    assert training_rules.contract({"a.parquet": good, "labels/a.parquet": good}) is None
    assert training_rules.contract({"a.parquet": good, "b.parquet": bad}) == (
        "data contract violated, quarantined: b.parquet: age: max: 12 rows above 100"
    )


def test_the_gate_judges_the_candidate_against_a_baseline_fitted_on_its_rows(trained, split):
    train_frame, holdout = split
    candidate, baseline, champion = training_rules.evaluations(
        trained.pipeline, train_frame, holdout, None
    )
    assert champion is None and candidate == evaluate(trained.pipeline, holdout)
    assert baseline.overall["roc_auc"] == pytest.approx(0.5)  # the dummy: no ranking at all
    settings = PipelineSettings()
    assert training_rules.gate((candidate, baseline, None), settings, None, None).passed
    # Against itself as the champion with a margin it cannot beat
    strict = settings.model_copy(update={"champion_margin": 0.01})
    verdict = training_rules.gate((candidate, baseline, candidate), strict, None, None)
    assert not verdict.passed and "champion" in verdict.reasons[0]


def test_the_reference_is_a_fixed_sample_of_at_most_reference_rows(split):
    train_frame, _ = split
    settings = PipelineSettings().model_copy(update={"reference_rows": 100})
    first = training_rules.reference(train_frame, settings)
    assert len(first) == 100 and first.index.isin(train_frame.index).all()
    assert first.equals(training_rules.reference(train_frame, settings))  # the same each time
    everything = settings.model_copy(update={"reference_rows": 10**6})
    assert len(training_rules.reference(train_frame, everything)) == len(train_frame)
