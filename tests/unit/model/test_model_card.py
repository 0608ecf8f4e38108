"""The model card (shared/model_card.py): every section a product manager or an auditor looks
for, with the run's own figures: performance against the baseline and the champion, each
group's rates, the fairness gaps naming the groups, every check of the gate, the lineage."""

from __future__ import annotations

import re

from shared.evaluate import evaluate
from shared.gate import GateConfig, judge
from shared.lineage import Lineage
from shared.model_card import SECTIONS, CardFacts, render
from shared.train import train_baseline

LINEAGE = Lineage(
    data_version="sha256:0123456789abcdef",
    data_files=["2026-01-01.parquet", "2026-01-02.parquet"],
    code_version="c0ffee1",
    params={"learning_rate": 0.1, "max_iter": 200},
    metrics={},
)


DEFAULT = GateConfig()


def facts(trained, split, champion=None, config=DEFAULT) -> CardFacts:
    train_frame, holdout = split
    evaluation = evaluate(trained.pipeline, holdout)
    baseline = evaluate(train_baseline(train_frame), holdout)
    theirs = evaluate(champion, holdout) if champion is not None else None
    return CardFacts(
        model_name="churn", version="7", window="2026-01-01..2026-01-08",
        train_rows=len(train_frame), holdout_rows=len(holdout), evaluation=evaluation,
        baseline=baseline, verdict=judge(evaluation, baseline, theirs, config), lineage=LINEAGE,
        champion=("6", theirs) if theirs is not None else None, run="abc123",
        attributions={"complaints_90d": 0.61, "orders_30d": 0.42, "late_rate": 0.3},
    )  # fmt: skip


def sections(card: str) -> list[str]:
    return re.findall(r"^## (.+)$", card, flags=re.MULTILINE)


def test_the_card_has_every_section_in_order_with_the_runs_figures(trained, split):
    card_facts = facts(trained, split)
    card = render(card_facts)
    assert card.startswith("# Model card: churn, version 7\n")
    assert sections(card) == list(SECTIONS)
    assert "Not for**: pricing, credit" in card  # intended use says what it is not for
    auc = card_facts.evaluation.overall["roc_auc"]
    assert re.search(rf"\| roc_auc \| {auc:.3f} \| 0\.500 \|", card)  # against the baseline
    assert f"{card_facts.holdout_rows} labelled rows" in card
    for group in ("ios", "android", "web", "metro", "rural", "25-34"):
        assert re.search(rf"\| \w+ \| {re.escape(group)} \| \d+ \| 0\.\d{{3}} \|", card), group
    ages = card_facts.evaluation.fairness["age_band"]
    gap = ages.gaps["equalized_odds_difference"]
    assert f"| age_band | equalized odds difference | {gap.value:.3f} | " in card
    assert gap.describe(ages.groups) in card  # the two groups furthest apart, named
    assert "| 1 | complaints_90d | 0.610 |" in card and "| 3 | late_rate | 0.300 |" in card
    assert "The gate **passed**" in card
    for check in card_facts.verdict.checks:
        assert f"| passed | {check.describe()} |" in card
    assert "`c0ffee1`" in card and "`sha256:0123456789abcdef`" in card
    assert "| parameter learning_rate | `0.1` |" in card and "`abc123`" in card
    assert "champion before" not in card  # a first model has none


def test_a_rejected_version_s_card_names_the_failed_checks_and_the_champion(trained, split):
    strict = GateConfig(min_roc_auc=0.99)
    card_facts = facts(trained, split, champion=trained.pipeline, config=strict)
    card = render(card_facts)
    assert "The gate **rejected**" in card
    assert f"| **failed** | {card_facts.verdict.checks[0].describe()} |" in card
    assert "champion before (version 6)" in card
    assert card.count("| **failed** |") == len(card_facts.verdict.reasons)
