"""Settings of level 1's pipeline and monitoring flows, from L1_* environment variables.

The service has its own settings (`service.py`, L1_SERVE_*). The few values both need have
one unprefixed name: MLFLOW_TRACKING_URI, PREDICTION_STORE_URL and MODEL_NAME.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.gate import GateConfig
from shared.schema import MODEL_NAME


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="L1_", frozen=True)

    # Where things are
    landing: Path = Path("var/landing")
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", validation_alias="MLFLOW_TRACKING_URI"
    )
    prediction_store_url: str = Field(
        "sqlite:///var/level1/predictions.db", validation_alias="PREDICTION_STORE_URL"
    )
    model_name: str = Field(MODEL_NAME, validation_alias="MODEL_NAME")
    experiment: str = "level1-ct"
    evidently_workspace: str = "var/level1/evidently"  # a folder, or the Evidently UI's URL
    evidently_project: str = "churn - level 1 monitoring"
    service_url: str = "http://127.0.0.1:8001"  # where the replay sends each day's requests

    # Training: the newest `window_days` labelled batches, the newest of them held out
    window_days: int = 14
    n_iter: int = 10
    seed: int = 42
    holdout_fraction: float = 0.2
    reference_rows: int = 5000  # training rows kept with the model for drift checks
    # Features the model must not use, e.g. L1_DROPPED_FEATURES='["avg_delivery_minutes"]'
    dropped_features: tuple[str, ...] = ()

    # The gate (see shared/gate.py): its defaults are GateConfig's, defined there once
    min_roc_auc: float = GateConfig.min_roc_auc
    min_auc_lift: float = GateConfig.min_auc_lift_over_baseline
    champion_margin: float = GateConfig.champion_margin  # may be negative: see GateConfig
    max_slice_drop: float = GateConfig.max_slice_drop
    max_equalized_odds_difference: float = GateConfig.max_equalized_odds_difference
    max_fairness_worsening: float = GateConfig.max_fairness_worsening

    # Triggers
    train_cron: str = "0 3 * * *"  # the scheduled retrain, in UTC
    watch_interval_seconds: int = 30  # how often the watcher looks for new batches
    monitor_interval_seconds: int = 60  # how often monitoring checks live traffic

    # Monitoring: alert (and retrain) when live traffic crosses these
    monitor_rows: int = 2000  # the newest predictions of the champion to check
    monitor_min_rows: int = 200  # fewer is too few to judge drift on
    drift_share_threshold: float = 0.3  # share of features whose distribution drifted
    max_live_auc_drop: float = 0.04  # live ROC AUC (where labels arrived) vs the hold-out's
    # What the champion leans on for its live answers vs its hold-out's: the share of its mean
    # |SHAP attribution| that moved between features (shared/explain.attribution_shift).
    # Measured on make compare's story (2026-12-07): 0.006-0.025 while nothing changes, at
    # most 0.030 while 36 % of the features drift (the younger customers are decided on the
    # same grounds: age's share 8 % -> 11 %); a champion scored on customers all young, heavy
    # discount users without a subscription moves 0.11.
    max_attribution_shift: float = 0.1
    # Explaining the live answers costs a check seconds (shap's import, the champion's load,
    # monitor_rows answers) and what a model leans on moves with its traffic over hours, not
    # minutes: within this long of the check that measured a version's, checks judge those.
    attribution_interval_seconds: int = 600
    retrain_cooldown_seconds: int = 300  # at most one drift-triggered retrain per cooldown
    # Who turns monitoring's alert into a retrain: one path, never two racing. The Prefect
    # event trigger where no Alertmanager runs (the embedded mode without Debian's packages);
    # Alertmanager's webhook (level1_ct/alerts.py) where Prometheus' rule raises the alert:
    # the stacks, and `make demo` where the packages are installed.
    alert_route: Literal["prefect-event", "alertmanager"] = "prefect-event"

    # Staleness (alert rules; level1_ct/pipeline_metrics.py exports the bars beside the figures)
    max_model_age_days: float = 7.0  # the champion was trained more than this long ago
    max_data_lag_days: int = 3  # newer labelled days have landed than the champion's newest
    metrics_port: int = 9108  # where `python -m level1_ct.pipeline_metrics` answers
    metrics_host: str = "0.0.0.0"  # in a container; the embedded mode binds 127.0.0.1

    def gate(self) -> GateConfig:
        return GateConfig(
            min_roc_auc=self.min_roc_auc,
            min_auc_lift_over_baseline=self.min_auc_lift,
            champion_margin=self.champion_margin,
            max_slice_drop=self.max_slice_drop,
            max_equalized_odds_difference=self.max_equalized_odds_difference,
            max_fairness_worsening=self.max_fairness_worsening,
        )


@cache
def get_settings() -> PipelineSettings:
    return PipelineSettings()
