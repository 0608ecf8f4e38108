"""A model card: one page per registered version that a product manager or an auditor can read.

What the model is for and not for, what it learned from, how good it is overall and for each
group of customers, whether it treats the groups alike, why the gate let it through (or not),
and where it came from. Markdown, so that MLflow shows it as an artifact of the version's run
and a reviewer can read it in a pull request; the levels write it from what they already
computed (the evaluation, the verdict, the lineage), so it cannot disagree with the run.

The sections, in order (`SECTIONS`; tests/unit/model/test_model_card.py checks each is there):
intended use, training data, performance, performance per group, fairness, top attributions
(`shared/explain.py`), the gate's verdict, lineage, limitations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shared.evaluate import MIN_SLICE_ROWS, THRESHOLD, Evaluation
from shared.fairness import GAPS, MIN_OUTCOMES
from shared.gate import Verdict
from shared.lineage import Lineage

SECTIONS = ("Intended use", "Training data", "Performance", "Performance per group",
            "Fairness", "Top attributions", "The gate's verdict", "Lineage",
            "Limitations")  # fmt: skip
TOP = 8  # attributions listed
FILE = "model_card.md"  # its name beside the model: an MLflow run's artifact, level 0's export

INTENDED_USE = f"""\
The model estimates, for each active customer of the food-delivery app, the probability that
they stop ordering within the next 30 days. A customer at or above {THRESHOLD:.0%} is *flagged*:
the retention team may send them an offer (a discount, a free delivery).

- **Intended users**: the retention team, through the prediction service's `/predict`.
- **Not for**: pricing, credit, or any decision that withholds a service from a customer. A
  missed flag costs a customer an offer; a wrong flag costs the company one. The model was not
  judged for anything else.
- **Groups that must be treated alike**: age bands, app platforms and city tiers. The
  fairness section shows how far apart the model's decisions are for them."""

LIMITATIONS = f"""\
- Trained and judged on the newest labelled days only (the window above): a customer base
  that changes faster than the window is retrained is judged on yesterday's behaviour.
- Labels arrive days after a prediction, so live quality and live fairness are known late
  (level 1's monitoring computes both once labels land).
- Groups smaller than {MIN_SLICE_ROWS} customers, or with fewer than {MIN_OUTCOMES} churners or
  stayers, are reported by size only: their rates would be noise. Age is the only personal
  attribute the model sees; gender, origin and income are neither collected nor checked.
- Groups whose churn rates differ (rural customers wait longer for deliveries and leave more
  often) get different rates from any accurate model: the gate bounds the gap and holds it
  to the champion's, it does not ask for zero."""


@dataclass(frozen=True)
class CardFacts:
    """What a card says, all of it already computed by the run that trained the model."""

    model_name: str
    version: str
    window: str  # "2026-01-01..2026-01-14": the labelled days it learned from
    train_rows: int
    holdout_rows: int
    evaluation: Evaluation  # on the hold-out
    baseline: Evaluation  # the dummy "always the churn rate", on the same hold-out
    verdict: Verdict
    lineage: Lineage
    champion: tuple[str, Evaluation] | None = None  # the version it was judged against
    run: str = ""  # where the run is (an MLflow run id, or a file)
    # mean |SHAP attribution| per feature on the hold-out, largest first (shared/explain.py)
    attributions: dict[str, float] | None = None
    judge: str = "The gate"  # who judged it: level 0 has a person's one check, not a gate


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _performance(facts: CardFacts) -> str:
    metrics = ("roc_auc", "precision", "recall", "f1", "accuracy", "log_loss")
    header = ["measure", f"version {facts.version}", "baseline (always the churn rate)"]
    others = [facts.baseline]
    if facts.champion:
        header.append(f"champion before (version {facts.champion[0]})")
        others.append(facts.champion[1])
    rows = [[m, _number(facts.evaluation.overall.get(m)),
             *(_number(e.overall.get(m)) for e in others)] for m in metrics]  # fmt: skip
    return (
        f"On the hold-out: the newest {facts.holdout_rows} labelled rows, days the model did "
        f"not learn from. Churn rate there: {facts.evaluation.positive_rate:.1%}. ROC AUC is "
        "the chance that a random churner is scored above a random stayer (0.5 is a coin); "
        "precision is the share of flagged customers who did leave, recall the share of "
        "leavers who were flagged.\n\n" + _table(header, rows)
    )


def _per_group(evaluation: Evaluation) -> str:
    rows = []
    for name, groups in evaluation.slices.items():
        fair = evaluation.fairness.get(name)
        for group, metrics in groups.items():
            rates = fair.groups.get(group, {}) if fair else {}
            rows.append([name, group, int(metrics["rows"]), _number(metrics.get("roc_auc")),
                         _number(rates.get("true_positive_rate"), 2),
                         _number(rates.get("false_positive_rate"), 2),
                         _number(rates.get("selection_rate"), 2),
                         _number(rates.get("calibration_gap"), 2)])  # fmt: skip
    header = ["attribute", "group", "customers", "ROC AUC", "leavers flagged (TPR)",
              "stayers flagged (FPR)", "flagged", "calibration gap"]  # fmt: skip
    return (
        "The same hold-out, one group at a time. *Calibration gap*: the mean predicted "
        "probability minus the share who left (0: the scores mean the same for this group). "
        "n/a: too few customers to judge.\n\n" + _table(header, rows)
    )


def _fairness(facts: CardFacts) -> str:
    rows = []
    for name, attribute in facts.evaluation.fairness.items():
        theirs = facts.champion[1].fairness.get(name) if facts.champion else None
        for gap in GAPS:
            found = attribute.gaps.get(gap)
            row = [name, gap.replace("_", " "), _number(attribute.gap(gap)),
                   found.describe(attribute.groups) if found else "n/a"]  # fmt: skip
            if facts.champion:
                row.append(_number(theirs.gap(gap)) if theirs else "n/a")
            rows.append(row)
    header = ["attribute", "gap", "value", "between"]
    if facts.champion:
        header.append(f"champion before (version {facts.champion[0]})")
    return (
        "How far apart the decisions are for the groups of each attribute (0: alike). "
        "*Equalized odds difference*: the wider of the gaps between two groups' shares of "
        "leavers flagged and of stayers flagged; the gate holds it (see its verdict). "
        "*Demographic parity difference*: the gap between the groups' shares flagged at all. "
        "*Calibration difference*: the gap between their calibration gaps.\n\n"
        + _table(header, rows)
    )


def _attributions(attributions: dict[str, float] | None) -> str:
    if not attributions:
        return "Not computed for this version."
    rows = [[i + 1, name, _number(value)]
            for i, (name, value) in enumerate(list(attributions.items())[:TOP])]  # fmt: skip
    return (
        "What the model leans on: for each feature, how far it moves a customer's score on "
        "average (the mean absolute SHAP attribution on the hold-out, in log-odds of churn; "
        "`POST /explain` gives one customer's). A feature high on this list that should not "
        "matter to churn is a question to ask before the model ships.\n\n"
        + _table(["rank", "feature", "mean abs attribution"], rows)
    )


def _verdict(verdict: Verdict, judge: str) -> str:
    outcome = "**passed**" if verdict.passed else "**rejected**"
    rows = [["passed" if c.passed else "**failed**", c.describe()] for c in verdict.checks]
    return (f"{judge} {outcome}: every check below, with its numbers.\n\n"
            + _table(["result", "check"], rows))  # fmt: skip


def _lineage(facts: CardFacts) -> str:
    lineage = facts.lineage
    rows = [["code version (git commit)", f"`{lineage.code_version}`"],
            ["data version (content hash)", f"`{lineage.data_version}`"],
            ["schema version", lineage.schema_version],
            ["trained at (UTC)", lineage.trained_at],
            ["recipe fingerprint", f"`{lineage.fingerprint() or 'n/a'}`"],
            *([["run", f"`{facts.run}`"]] if facts.run else []),
            *[[f"parameter {k}", f"`{v}`"] for k, v in sorted(lineage.params.items())]]  # fmt: skip
    return _table(["what", "value"], rows)


def render(facts: CardFacts) -> str:
    """The card as Markdown."""
    files = facts.lineage.data_files
    data = (
        f"Labelled days {facts.window}: {len(files)} files (features and their labels), "
        f"{facts.train_rows} rows learned from and {facts.holdout_rows} held out (the newest "
        f"days). Data version `{facts.lineage.data_version}`: the same files give the same "
        "version, any edit another."
    )
    body = {
        "Intended use": INTENDED_USE,
        "Training data": data,
        "Performance": _performance(facts),
        "Performance per group": _per_group(facts.evaluation),
        "Fairness": _fairness(facts),
        "Top attributions": _attributions(facts.attributions),
        "The gate's verdict": _verdict(facts.verdict, facts.judge),
        "Lineage": _lineage(facts),
        "Limitations": LIMITATIONS,
    }
    title = f"# Model card: {facts.model_name}, version {facts.version}\n"
    return title + "".join(f"\n## {name}\n\n{body[name]}\n" for name in SECTIONS)
