"""The replay's alerts checked against Prometheus' rules (level1_ct/prometheus/rules.yml): the
figures level 1's exporter would publish (level1_ct/pipeline_metrics.py) are built from what a
replayed level decided, day by day, and `promtool test rules` says which rules fire on them.
Each replayed day is an hour of series, one sample a minute, judged 12 minutes in: past the
rules' `for: 10m`, inside `increase(...[15m])`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from compare.levels import PIPELINE, Level1
from compare.served import Model
from level1_ct import pipeline_metrics
from shared.evaluate import SLICES
from shared.fairness import gaps_by_attribute
from tests.prometheus_tools import tool

RULES = Path(__file__).resolve().parents[1] / "level1_ct/prometheus/rules.yml"
MINUTES, AT = 60, 12


def figures(level: Level1, day: int, monitored: Model, evening: Model) -> dict[str, float | None]:
    """The exporter's figures on the evening of `day`: the check monitoring made of the
    champion it judged (`monitored`), under the exporter's names, with that champion's hold-out;
    the staleness of the champion serving after the evening's run (`evening`); the files the
    data contract refused so far; the thresholds. None: no series (no check, no labels yet)."""
    check = level.checks.get(day)
    landed = level.world.labels_landed(day)
    found: dict[str, float | None] = {
        f'{name}{{job="pipeline"}}': check.metrics.get(key) if check else None
        for key, name in pipeline_metrics.MONITORED.items()
    }
    live_gaps = gaps_by_attribute(check.metrics, "live_fairness/") if check else {}
    for attribute in SLICES:  # every attribute's series, None where it has no gap
        labels = f'{{job="pipeline",attribute="{attribute}"}}'
        found[f"churn_live_equalized_odds_difference{labels}"] = live_gaps.get(attribute)
    found |= {
        'churn_champion_holdout_roc_auc{job="pipeline"}': monitored.holdout_auc,
        'churn_model_age_seconds{job="serving",arm="champion"}': (day - evening.trained) * 86400,
        'churn_champion_data_lag_days{job="pipeline"}': (
            landed[-1] - max(evening.fitted.days) if landed else None
        ),
        'up{job="serving"}': 1,  # the service answers Prometheus all along
        'churn_batches_quarantined_total{job="pipeline"}': sum(
            verdict is None for d, verdict in level.verdicts.items() if d <= day
        ),
    }
    for sample in pipeline_metrics.thresholds(PIPELINE).samples:
        name = f'churn_alert_threshold{{job="pipeline",name="{sample.labels["name"]}"}}'
        found[name] = sample.value
    return found


def fired(level: Level1, day: int) -> list[str]:
    """The rules the replay fired on the evening of `day`."""
    return sorted({rule for rule, _ in level.firing.get(day, set())})


def assert_prometheus_fires_the_same(evenings: list[dict[str, float | None]],
                                     expected: list[list[str]], tmp_path: Path) -> None:  # fmt: skip
    """`promtool test rules`: on the series of `evenings`, one hour each, exactly the rules
    `expected[i]` fire in hour i."""
    names = list(evenings[0])

    def values(name: str) -> str:
        samples = (evening[name] for evening in evenings)
        return " ".join(f"{'_' if v is None else repr(float(v))}x{MINUTES - 1}" for v in samples)

    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name, "values": values(name)} for name in names],
            "promql_expr_test": [
                {
                    "expr": 'count by (alertname) (ALERTS{alertstate="firing"})',
                    "eval_time": f"{i * MINUTES + AT}m",
                    "exp_samples": [{"labels": f'{{alertname="{r}"}}', "value": 1} for r in rules],
                }
                for i, rules in enumerate(expected)
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "replay_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, f"the replay fired {expected}\n{result.stdout}{result.stderr}"
