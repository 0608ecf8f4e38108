"""Level 1's monitoring: is live traffic still like the data the champion learned from, and,
where labels have arrived, is the champion still right?

Every `monitor_interval_seconds` (a schedule on the deployment) this flow reads the newest
predictions of the serving champion from the prediction store, joins the labels that have
landed since, and runs Evidently against the training sample logged with the champion.
The numbers go to the prediction store (table `monitoring`, to plot over time) and the
reports to the Evidently workspace (the Evidently UI). When drift or quality crosses its
threshold the flow logs an alert and emits `churn.drift.detected`: the training deployment's
trigger turns that into a retraining run. No human in the loop. In the stacks
(L1_ALERT_ROUTE=alertmanager) Prometheus reads the same figures (level1_ct/pipeline_metrics.py)
and its alert, through Alertmanager, starts the retrain instead: the flow emits nothing.
Groups treated further apart than the gate allows (live fairness) are recorded and logged,
and start no retrain: their alert (LiveFairnessGapHigh) pages a person. What the champion
leans on for its live answers (mean |SHAP attribution| per feature) is held to what it leaned
on for its hold-out: a shift past L1_MAX_ATTRIBUTION_SHIFT retrains, as drift does. Those
figures are measured at most every L1_ATTRIBUTION_INTERVAL_SECONDS per champion; the checks in
between judge the last ones measured (and record only the shift they give).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from mlflow import MlflowClient
from prefect import flow, get_run_logger
from prefect.states import Completed

from level1_ct import assessment, events, names, registry, reports
from level1_ct.flows.retrying import io_task, step
from level1_ct.prediction_log import (
    connect,
    load_labels,
    monitoring,
    newest_check,
    recent_predictions,
    record_monitoring,
)
from level1_ct.settings import PipelineSettings, get_settings
from shared.explain import Explainer, global_attributions
from shared.utc import as_utc


@io_task
def find_champion(
    settings: PipelineSettings,
) -> tuple[registry.ModelRef, float, dict[str, float]] | None:
    """The champion, the ROC AUC it had on its hold-out (the bar live quality is held to)
    and what it leaned on there: its mean |attribution| per feature (the run's
    `attribution/<feature>` metrics; none for a version registered before they were logged)."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    ref = registry.lookup(client, settings.model_name)
    if ref is None:
        return None
    metrics = client.get_run(ref.run_id).data.metrics
    prefix = registry.ATTRIBUTION_METRIC
    leaned = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
    return ref, metrics.get("roc_auc", float("nan")), leaned


@dataclass(frozen=True)
class LiveAttributions:
    figures: dict[str, float]  # mean |attribution| per feature on the champion's live answers
    measured: bool  # by this check (False: by an earlier one, which recorded them)


@io_task
def live_attributions(
    settings: PipelineSettings, engine: sa.Engine, champion: registry.ModelRef, live
) -> LiveAttributions:
    """What the champion leans on for its live answers: mean |attribution| per feature.
    Measuring costs seconds (shap's import, the champion's load, explaining every answer), so
    within `attribution_interval_seconds` of the check that last measured this version's,
    that check's figures are used again."""
    prefix = assessment.LIVE_ATTRIBUTION
    last, when = newest_check(engine, champion.version, having=prefix)
    if when is not None and datetime.now(UTC) - when < timedelta(
        seconds=settings.attribution_interval_seconds
    ):
        return LiveAttributions({k.removeprefix(prefix): v for k, v in last.items()}, False)
    explainer = Explainer(registry.load_model(champion, settings.mlflow_tracking_uri))
    return LiveAttributions(global_attributions(explainer, live), True)


@io_task
def reference_of(settings: PipelineSettings, champion: registry.ModelRef):
    return registry.reference_data(settings.mlflow_tracking_uri, champion)


@step
def check(
    settings: PipelineSettings,
    version: str,
    live,
    labelled,
    reference,
    holdout_auc: float,
    last_alert,
    attributions=None,
) -> assessment.Assessment:
    """Drift of the champion's live features against its reference, the service's quality
    on the newest predictions whose labels have arrived, and the alerts they raise
    (`level1_ct.assessment`, the rule `make compare` replays); the reports go to Evidently."""
    now = datetime.now(UTC)
    # Tagged so that the Evidently UI's Reports page filters by version and by day
    tags = [f"version={version}", f"date={now.date().isoformat()}", "kind=monitoring"]
    drift = reports.data_drift(live, reference, settings.drift_share_threshold, tags=tags)
    result = assessment.assess(settings, drift, labelled, holdout_auc, last_alert, now, tags,
                               attributions)  # fmt: skip
    try:
        reports.publish(settings.evidently_workspace, settings.evidently_project, result.snapshots)
    except Exception as error:  # the UI being down must not silence the alert
        get_run_logger().warning(
            "could not publish to Evidently (%s): %s", settings.evidently_workspace, error
        )
    return result


def _last_alert(engine: sa.Engine) -> datetime | None:
    query = sa.select(sa.func.max(monitoring.c.checked_at)).where(
        monitoring.c.metric == assessment.ALERT
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    return as_utc(found)


@flow(name=names.MONITORING)
def monitoring_flow():
    """Check the champion's live traffic; alert and trigger retraining past a threshold."""
    settings, logger = get_settings(), get_run_logger()
    found_champion = find_champion(settings)
    if found_champion is None:
        return Completed(message="no champion yet: nothing to monitor")
    champion, holdout_auc, leaned = found_champion
    engine = connect(settings.prediction_store_url)
    loaded = load_labels(engine, settings.landing)
    for name, reason in loaded.skipped.items():
        logger.warning("label file %s left out, it breaks the label contract: %s", name, reason)
    # Drift: the champion's own traffic. Quality: the newest answers whose labels have
    # arrived, whichever version gave them; labels come days late, and a champion replaced
    # more often than that would never be judged on its own answers.
    live = recent_predictions(engine, champion.version, settings.monitor_rows)
    labelled = recent_predictions(engine, None, settings.monitor_rows, labelled=True)
    logger.info(
        "%d predictions of version %s; %d newest labelled predictions (%d new labels)",
        len(live), champion.version, len(labelled), loaded.added,
    )  # fmt: skip
    if not assessment.enough_to_judge(settings, len(live)):
        return Completed(
            message=f"{len(live)} predictions of version {champion.version}: "
            f"fewer than {settings.monitor_min_rows}, too few to judge"
        )
    explained = live_attributions(settings, engine, champion, live) if leaned else None
    result = check(
        settings, champion.version, live, labelled, reference_of(settings, champion), holdout_auc,
        _last_alert(engine), (leaned, explained.figures) if explained else None,
    )  # fmt: skip
    metrics, found = result.metrics, list(result.alerts.values())
    if explained and not explained.measured:  # recorded by the check that measured them
        metrics = {
            k: v for k, v in metrics.items() if not k.startswith(assessment.LIVE_ATTRIBUTION)
        }
    record_monitoring(engine, champion.version, metrics)
    summary = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
    if not found:
        return Completed(message=f"version {champion.version} healthy: {summary}")
    if result.pages:
        logger.warning("ALERT for a person (Alertmanager pages): %s", "; ".join(result.pages))
    if not result.retrain and not result.cooling:
        return Completed(message=f"alert for a person, no retrain: {'; '.join(found)}")
    if result.cooling:
        logger.warning("ALERT (retraining already triggered recently): %s", "; ".join(found))
        return Completed(message=f"alert, in cooldown: {'; '.join(found)}")
    if settings.alert_route == "alertmanager":
        # Prometheus' rules judge the same figures by the same bars (level1_ct/prometheus/);
        # Alertmanager's webhook starts the retrain: one path, so no event here.
        logger.warning("ALERT (Alertmanager starts the retrain): %s", "; ".join(found))
        return Completed(message=f"alert raised, for Alertmanager: {'; '.join(found)}")
    logger.warning("ALERT, triggering retraining: %s", "; ".join(found))
    events.emit(
        events.DRIFT_DETECTED,
        source="monitoring",
        payload={"model_version": champion.version, "alerts": found, "metrics": metrics},
    )
    return Completed(message=f"alert raised, retraining triggered: {'; '.join(found)}")
