"""The pipeline's and monitoring's figures as Prometheus metrics: an exporter that reads them,
at each scrape, from where the pipeline already keeps them.

    python -m level1_ct.pipeline_metrics      # http://0.0.0.0:9108/metrics (L1_METRICS_PORT)

Why an exporter rather than Prometheus' Pushgateway: every figure already lives in a store the
pipeline writes (MLflow's runs and registry, the prediction store's `monitoring` table, the
landing folder's quarantine). Reading them when Prometheus asks leaves one copy of each, loses
nothing when a process restarts, and never shows a figure the stores no longer hold: a
Pushgateway keeps whatever a job pushed until someone deletes it, so a crashed run's last push
or a replaced champion's drift would go on firing alerts. The cost is a few small queries per
scrape.

    churn_training_runs_total{outcome}        promoted, passed (left as challenger), rejected,
                                              failed, running: the experiment's runs so far
    churn_training_failures_in_a_row          the newest finished runs that failed, in a row
    churn_last_successful_training_timestamp_seconds   the newest run that finished (Unix s)
    churn_champion_info{version,window}       the registry's champion (1)
    churn_champion_trained_timestamp_seconds  when it was registered, right after its training
    churn_champion_data_lag_days              newest labelled day landed - its newest training day
    churn_champion_holdout_roc_auc            the bar its live quality is held to
    churn_champion_equalized_odds_difference{attribute}
                                              its groups' widest gap on the hold-out
                                              (shared/fairness.py), per slice attribute
    churn_drift_share, churn_drifted_columns, churn_live_roc_auc, churn_attribution_shift,
    churn_live_equalized_odds_difference{attribute}
                                              monitoring's last check of the champion (none
                                              before its first check; fairness only where
                                              labels have landed)
    churn_monitoring_last_check_timestamp_seconds
    churn_batches_quarantined_total           files the data contract refused (0 before any:
                                              an alert's increase() needs the series first)
    churn_contract_refused_rows_total         the rows in them
    churn_alert_threshold{name}               the settings the alert rules compare with:
                                              drift_share, live_roc_auc_drop, model_age_seconds,
                                              data_lag_days, equalized_odds_difference,
                                              attribution_shift (one source:
                                              level1_ct/settings.py)
    churn_pipeline_source_up{source}          1 if the store answered this scrape, else 0
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from level1_ct import names, registry
from level1_ct.prediction_log import newest_check
from level1_ct.settings import PipelineSettings, get_settings
from shared.data import day_of, labelled_feature_files
from shared.fairness import gaps_by_attribute

log = logging.getLogger(__name__)
MONITORED = {"drift_share": "churn_drift_share", "drifted_columns": "churn_drifted_columns",
             "live_roc_auc": "churn_live_roc_auc",
             "attribution_shift": "churn_attribution_shift"}  # fmt: skip


def per_attribute(name: str, documentation: str, gaps: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["attribute"])
    for attribute, value in sorted(gaps.items()):
        family.add_metric([attribute], value)
    return family


@dataclass(frozen=True)
class Runs:
    """The training experiment's runs, as their outcomes, newest first."""

    outcomes: list[str]
    last_success: float | None  # Unix seconds the newest finished run ended

    @property
    def failures_in_a_row(self) -> int:
        finished = [o for o in self.outcomes if o != "running"]
        count = 0
        for outcome in finished:
            if outcome != "failed":
                break
            count += 1
        return count


def outcome(run) -> str:
    """What a training run came to, from its MLflow status and the tags the flow wrote."""
    status, tags = run.info.status, run.data.tags
    if status in ("RUNNING", "SCHEDULED"):
        return "running"
    if status != "FINISHED":
        return "failed"  # FAILED, or KILLED
    if tags.get("promoted") == "true":
        return "promoted"
    return "passed" if tags.get("gate") == "passed" else "rejected"


def training_runs(client: MlflowClient, experiment: str) -> Runs:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return Runs([], None)
    runs, token = [], None
    while True:
        page = client.search_runs(
            [found.experiment_id], order_by=["attributes.start_time DESC"],
            max_results=1000, page_token=token,
        )  # fmt: skip
        runs += list(page)
        token = page.token
        if not token:
            break
    ended = [r.info.end_time for r in runs if r.info.status == "FINISHED" and r.info.end_time]
    return Runs([outcome(r) for r in runs], max(ended) / 1000 if ended else None)


@dataclass(frozen=True)
class Champion:
    version: str
    window: str  # "2026-01-01..2026-01-14", the days it was trained on
    trained_at: float | None
    holdout_roc_auc: float | None
    holdout_equalized_odds: dict[str, float] = field(default_factory=dict)  # by attribute

    @property
    def newest_day(self) -> date | None:
        try:
            return date.fromisoformat(self.window.split("..")[-1])
        except ValueError:
            return None


def champion(client: MlflowClient, model_name: str) -> Champion | None:
    ref = registry.lookup(client, model_name)
    if ref is None:
        return None
    metrics = client.get_run(ref.run_id).data.metrics if ref.run_id else {}
    return Champion(ref.version, ref.window, ref.registered_at, metrics.get("roc_auc"),
                    gaps_by_attribute(metrics))  # fmt: skip


@dataclass(frozen=True)
class Quarantine:
    files: int = 0
    rows: int = 0


def quarantined(landing: Path) -> Quarantine:
    """The files the data contract refused: each has a `<name>.reason.json` beside it."""
    files, rows = 0, 0
    for reason_file in sorted((Path(landing) / names.QUARANTINE).glob("*/*.reason.json")):
        try:
            reason = json.loads(reason_file.read_text())
        except (OSError, ValueError):
            continue  # being written right now (the name is claimed first): next scrape
        files += 1
        rows += int(reason.get("violations", {}).get("rows") or 0)
    return Quarantine(files, rows)


def newest_labelled_day(landing: Path) -> date | None:
    files = labelled_feature_files(Path(landing))
    return day_of(files[-1]) if files else None


def thresholds(settings: PipelineSettings) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "churn_alert_threshold", "The settings the alert rules compare with", labels=["name"]
    )
    for name, value in (
        ("drift_share", settings.drift_share_threshold),
        ("live_roc_auc_drop", settings.max_live_auc_drop),
        ("model_age_seconds", settings.max_model_age_days * 86400),
        ("data_lag_days", settings.max_data_lag_days),
        ("equalized_odds_difference", settings.max_equalized_odds_difference),
        ("attribution_shift", settings.max_attribution_shift),
    ):
        family.add_metric([name], value)
    return family


class PipelineCollector(Collector):
    """Level 1's pipeline figures, read at each scrape. A store that does not answer costs
    only its own metrics (and `churn_pipeline_source_up{source}` says so)."""

    def __init__(self, settings: PipelineSettings):
        self.settings = settings
        self._engine: sa.Engine | None = None

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.settings.prediction_store_url, pool_pre_ping=True)
        return self._engine

    def sources(self) -> dict[str, Callable[[], Iterable[Metric]]]:
        """What each store gives; a level adds its own (level 2: CI and CD)."""
        return {"mlflow": self.from_mlflow, "landing": self.from_landing}

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "churn_pipeline_source_up", "1 if the store answered this scrape", labels=["source"]
        )
        for source, read in self.sources().items():
            try:
                families = list(read())
            except Exception as error:  # a store down: the others still report
                log.warning("could not read %s: %s", source, error)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up
        yield thresholds(self.settings)

    def from_mlflow(self) -> Iterable[Metric]:
        client = MlflowClient(self.settings.mlflow_tracking_uri)
        runs = training_runs(client, self.settings.experiment)
        total = CounterMetricFamily(
            "churn_training_runs", "Training runs so far, by outcome", labels=["outcome"]
        )
        counts = Counter(runs.outcomes)
        for name in ("promoted", "passed", "rejected", "failed", "running"):
            total.add_metric([name], counts.get(name, 0))
        yield total
        yield GaugeMetricFamily(
            "churn_training_failures_in_a_row", "The newest finished training runs that failed",
            value=runs.failures_in_a_row,
        )  # fmt: skip
        if runs.last_success is not None:
            yield GaugeMetricFamily(
                "churn_last_successful_training_timestamp_seconds",
                "When the newest training run that finished ended", value=runs.last_success,
            )  # fmt: skip
        found = champion(client, self.settings.model_name)
        if found is None:
            return
        yield from self.champion_families(found)
        yield from self.from_monitoring(found)

    def champion_families(self, found: Champion) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "churn_champion_info", "The registry's champion", labels=["version", "window"]
        )
        info.add_metric([found.version, found.window], 1)
        yield info
        if found.trained_at is not None:
            yield GaugeMetricFamily(
                "churn_champion_trained_timestamp_seconds",
                "When the champion was registered, right after its training", found.trained_at,
            )  # fmt: skip
        if found.holdout_roc_auc is not None:
            yield GaugeMetricFamily(
                "churn_champion_holdout_roc_auc", "The champion's ROC AUC on its hold-out",
                value=found.holdout_roc_auc,
            )  # fmt: skip
        if found.holdout_equalized_odds:
            yield per_attribute(
                "churn_champion_equalized_odds_difference",
                "The champion's widest gap between two groups' true- or false-positive rates "
                "on its hold-out, per attribute", found.holdout_equalized_odds,
            )  # fmt: skip
        newest = newest_labelled_day(self.settings.landing)
        if newest is not None and found.newest_day is not None:
            yield GaugeMetricFamily(
                "churn_champion_data_lag_days",
                "Days between the newest labelled batch landed and the champion's newest",
                value=(newest - found.newest_day).days,
            )  # fmt: skip

    def from_monitoring(self, found: Champion) -> Iterable[Metric]:
        figures, when = newest_check(self.engine(), found.version)
        if when is None:
            return
        yield GaugeMetricFamily(
            "churn_monitoring_last_check_timestamp_seconds",
            "When monitoring last checked the champion", value=when.timestamp(),
        )  # fmt: skip
        for key, name in MONITORED.items():
            if key in figures:
                yield GaugeMetricFamily(
                    name, f"Monitoring's last check of the champion: {key}", value=figures[key]
                )
        live = gaps_by_attribute(figures, "live_fairness/")
        if live:
            yield per_attribute(
                "churn_live_equalized_odds_difference",
                "Monitoring's last check: the widest gap between two groups' true- or "
                "false-positive rates on labelled answers, per attribute", live,
            )  # fmt: skip

    def from_landing(self) -> Iterable[Metric]:
        found = quarantined(self.settings.landing)
        yield CounterMetricFamily(
            "churn_batches_quarantined", "Files the data contract refused", value=found.files
        )
        yield CounterMetricFamily(
            "churn_contract_refused_rows", "Rows in the files the data contract refused",
            value=found.rows,
        )  # fmt: skip


def serve(collector: Collector, port: int, host: str = "0.0.0.0") -> None:
    """Answer /metrics with `collector` until SIGTERM or SIGINT."""
    metrics = CollectorRegistry()
    metrics.register(collector)
    server, _ = start_http_server(port, host, registry=metrics)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("pipeline metrics on http://%s:%d/metrics", host, port)
    stop.wait()
    server.shutdown()


def quick_to_fail() -> None:
    """A store that does not answer fails its part of the scrape within seconds, not after
    MLflow's minutes of retries: Prometheus gives a scrape 10 s."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")


def main(collector: type[PipelineCollector] = PipelineCollector) -> None:
    """Serve `collector`'s figures (level 2 passes its own) on L1_METRICS_PORT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quick_to_fail()
    settings = get_settings()
    serve(collector(settings), settings.metrics_port, settings.metrics_host)


if __name__ == "__main__":
    main()
