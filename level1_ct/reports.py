"""Evidently 0.7 reports: is this data like the data the model learned from, and, where
labels have arrived, is the model still right?

Used twice: the training pipeline checks a new batch against the champion's training data
(recorded, never blocking), and monitoring checks live traffic from the prediction log.
Reports go to MLflow as HTML and to an Evidently workspace that the Evidently UI shows.

Evidently is imported where a report is made, not with this module: the flows that import
it (and every process Prefect starts for a run of them) pay its import only when they check.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shared.schema import FEATURE_NAMES as _FEATURE_NAMES
from shared.schema import FEATURES

if TYPE_CHECKING:
    from evidently import DataDefinition
    from evidently.core.report import Snapshot

FEATURE_NAMES = list(_FEATURE_NAMES)

CATEGORICAL = [c.name for c in FEATURES if c.kind in ("category", "bool")]
NUMERICAL = [c.name for c in FEATURES if c.name not in CATEGORICAL]
TARGET, PROBABILITY = "target", "probability"


@dataclass(frozen=True)
class DriftResult:
    """What share of the features drifted, which ones, and the full Evidently snapshot."""

    share: float
    drifted: list[str]
    rows: int
    snapshot: Snapshot = field(repr=False)

    def metrics(self) -> dict[str, float]:
        return {"drift_share": self.share, "drifted_columns": float(len(self.drifted))}


@dataclass(frozen=True)
class QualityResult:
    """Classification quality on the predictions whose labels have arrived."""

    metrics: dict[str, float]
    rows: int
    snapshot: Snapshot = field(repr=False)


def _definition(extra_numerical: list[str] = (), classification: Any = None) -> DataDefinition:
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=[*NUMERICAL, *extra_numerical],
        categorical_columns=[*CATEGORICAL, *([TARGET] if classification else [])],
        classification=[classification] if classification else None,
    )


def data_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    drift_share: float = 0.5,
    summary: bool = True,
    tags: list[str] | None = None,
) -> DriftResult:
    """Drift of every contract feature (Evidently's per-column tests) plus data summary.
    `drift_share`: the share of drifted features at which Evidently's dataset test fails
    (monitoring passes its alert threshold, so the UI and the alert agree). `summary=False`
    leaves the data summary out (less than half the time, for `make compare`)."""
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    definition = _definition()
    presets = [
        DataDriftPreset(drift_share=drift_share),
        *([DataSummaryPreset()] if summary else []),
    ]
    snapshot = Report(presets, include_tests=True).run(
        Dataset.from_pandas(current[FEATURE_NAMES], data_definition=definition),
        Dataset.from_pandas(reference[FEATURE_NAMES], data_definition=definition),
        tags=list(tags or []),
    )
    result = snapshot.dict()
    share = next(
        m["value"]["share"]
        for m in result["metrics"]
        if m["config"]["type"].endswith("DriftedColumnsCount")
    )
    drifted = [
        t["metric_config"]["params"]["column"]
        for t in result["tests"]
        if t["id"] == "drift" and t["status"] == "FAIL"
    ]
    return DriftResult(
        share=float(share), drifted=sorted(drifted), rows=len(current), snapshot=snapshot
    )


_QUALITY = {"RocAuc": "roc_auc", "F1Score": "f1", "Accuracy": "accuracy", "LogLoss": "log_loss"}


def live_quality(labelled: pd.DataFrame, tags: list[str] | None = None) -> QualityResult:
    """ROC AUC, F1, accuracy and log loss of logged predictions (`probability`) against
    their arrived labels (`target`, 0/1). `tags` go on the snapshot (see `publish`)."""
    from evidently import BinaryClassification, Dataset, Report
    from evidently.presets import ClassificationPreset

    classification = BinaryClassification(target=TARGET, prediction_probas=PROBABILITY)
    definition = _definition([PROBABILITY], classification)
    with warnings.catch_warnings():  # one-class windows make sklearn warn per metric
        warnings.simplefilter("ignore")
        snapshot = Report([ClassificationPreset()]).run(
            Dataset.from_pandas(
                labelled[[*FEATURE_NAMES, TARGET, PROBABILITY]], data_definition=definition
            ),
            None,
            tags=list(tags or []),
        )
    metrics = {}
    for m in snapshot.dict()["metrics"]:
        kind = m["config"]["type"].rsplit(":", 1)[-1]
        if kind in _QUALITY and isinstance(m["value"], int | float):
            metrics[_QUALITY[kind]] = float(m["value"])
    return QualityResult(metrics=metrics, rows=len(labelled), snapshot=snapshot)


def publish(workspace: str | Path, project: str, snapshots: list[Snapshot]) -> None:
    """Add the snapshots to the project's timeline in the Evidently workspace: a folder
    (embedded mode) or the Evidently UI service's URL (containers: its API stores them).
    The project opens on the dashboard `dashboard()` describes (saved each time: the same
    panels, replaced, never added twice)."""
    from evidently.ui.workspace import RemoteWorkspace, Workspace

    where = str(workspace)
    ws = RemoteWorkspace(where) if where.startswith("http") else Workspace(where)
    found = ws.search_project(project)
    target = found[0] if found else ws.create_project(project, description="Level 1 monitoring")
    ws.save_dashboard(target.id, dashboard(str(target.id)))
    for snapshot in snapshots:
        ws.add_run(target.id, snapshot, include_data=False)


# The dashboard's panels: (title, Evidently metric, its labels, kind). The metric ids are
# the snapshots' own (DataDriftPreset's DriftedColumnsCount, ClassificationPreset's RocAuc,
# DataSummaryPreset's DatasetMissingValueCount), checked against Evidently 0.7.23.
PANELS = (
    ("Drift share, last check", "DriftedColumnsCount", {"value_type": "share"}, "counter"),
    ("Drifted columns, last check", "DriftedColumnsCount", {"value_type": "count"}, "counter"),
    ("Share of drifted features over time", "DriftedColumnsCount", {"value_type": "share"}, "line"),
    ("Drifted columns over time", "DriftedColumnsCount", {"value_type": "count"}, "line"),
    ("Live ROC AUC (labelled predictions)", "RocAuc", {}, "line"),
    (
        "Share of missing values per check",
        "DatasetMissingValueCount",
        {"value_type": "share"},
        "line",
    ),
)


def dashboard(project_id: str):
    """Monitoring's dashboard, with ids derived from the project's and the titles, so that
    saving it again changes nothing (the OSS UI takes one tab)."""
    import uuid

    from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    panels = []
    for title, metric, labels, kind in PANELS:
        values = [
            PanelMetric(legend=title.split(",")[0].lower(), metric=metric, metric_labels=labels)
        ]
        panel = (
            counter_panel(title, values, size="half", aggregation="last")
            if kind == "counter"
            else line_plot_panel(title, values, size="half")
        )
        panel.id = uuid.uuid5(uuid.NAMESPACE_URL, f"churn-monitoring:{project_id}:{title}")
        panels.append(panel)
    tab = DashboardTabModel(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"churn-monitoring:{project_id}:tab"),
        title="Monitoring", panels=[p.id for p in panels],
    )  # fmt: skip
    return DashboardModel(tabs=[tab], panels=panels)
