"""Level 2's pipeline figures as Prometheus metrics: level 1's exporter
(level1_ct/pipeline_metrics.py, which says why an exporter and not a Pushgateway), plus what
CI and CD did, read at each scrape from where they keep it:

    churn_delivery_runs_total{stage,state}   CI and CD flow runs, by final state (Prefect)
    churn_rollouts_total{outcome}            model versions by where their rollout ended:
                                             promoted, rolled back, stopped (MLflow's `rollout`
                                             version tag, which CD writes)

    python -m level2_cicd.pipeline_metrics   # http://0.0.0.0:9108/metrics (L1_METRICS_PORT)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_CLIENT_MAX_RETRIES,
    temporary_settings,
)
from prometheus_client.core import CounterMetricFamily, Metric

from level1_ct.pipeline_metrics import PipelineCollector, main
from level2_cicd.names import CD_FLOW, CI_FLOW

STATES = {"completed": StateType.COMPLETED, "failed": StateType.FAILED,
          "crashed": StateType.CRASHED, "cancelled": StateType.CANCELLED}  # fmt: skip
ROLLOUTS = ("promoted", "rolled back", "stopped")


def rollout_outcome(tag: str | None) -> str | None:
    """CD's `rollout` tag, as an outcome: "stopped at staging run" counts as stopped."""
    if tag in ("promoted", "rolled back"):
        return tag
    return "stopped" if tag and tag.startswith("stopped") else None


class DeliveryCollector(PipelineCollector):
    def sources(self):
        return {**super().sources(), "prefect": self.from_prefect, "registry": self.from_registry}

    def from_prefect(self) -> Iterable[Metric]:
        runs = CounterMetricFamily(
            "churn_delivery_runs", "CI and CD flow runs, by final state", labels=["stage", "state"]
        )
        quick = {
            PREFECT_CLIENT_MAX_RETRIES: 0,
            PREFECT_API_REQUEST_TIMEOUT: 3.0,
        }  # see quick_to_fail
        with temporary_settings(updates=quick), get_client(sync_client=True) as api:
            for stage, flow in (("ci", CI_FLOW), ("cd", CD_FLOW)):
                for state, kind in STATES.items():
                    count = api.count_flow_runs(
                        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                        flow_run_filter=FlowRunFilter(
                            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[kind]))
                        ),
                    )
                    runs.add_metric([stage, state], count)
        yield runs

    def from_registry(self) -> Iterable[Metric]:
        client = MlflowClient(self.settings.mlflow_tracking_uri)
        versions = client.search_model_versions(f"name = '{self.settings.model_name}'")
        counts = Counter(rollout_outcome(v.tags.get("rollout")) for v in versions)
        rollouts = CounterMetricFamily(
            "churn_rollouts", "Model versions by where their rollout ended", labels=["outcome"]
        )
        for outcome in ROLLOUTS:  # every outcome, 0 before the first: increase() needs it
            rollouts.add_metric([outcome], counts.get(outcome, 0))
        yield rollouts


if __name__ == "__main__":
    main(DeliveryCollector)
