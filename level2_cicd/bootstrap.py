"""Level 2's starting point in the container stack: what level 1 left behind, so a push has
something to be delivered against.

    python -m level2_cicd.bootstrap

- If nothing has landed yet, the simulator lands `L2_BOOTSTRAP_DAYS` days of the stable
  scenario (features and the labels that have arrived) into level 1's landing folder.
- If the registry has no champion yet, level 1's training pipeline trains one with a small
  search (`L2_BOOTSTRAP_N_ITER`) and promotes it (a flow run "bootstrap" in the Prefect UI,
  a version in MLflow).

Both steps are skipped when already done: the stack's one-shot `bootstrap` service runs it on
every `make up`, and only the first one does any work.
"""

from __future__ import annotations

from mlflow import MlflowClient

from level1_ct import registry
from level1_ct.flows.training import training_pipeline
from level1_ct.settings import get_settings as pipeline_settings
from level2_cicd.settings import get_settings
from shared.data import feature_files
from shared.simulator import SimulationConfig, simulate


def main() -> None:
    settings, pipeline = get_settings(), pipeline_settings()
    if feature_files(pipeline.landing):
        print(f"{pipeline.landing}: batches have landed already")
    else:
        config = SimulationConfig(days=settings.bootstrap_days, seed=settings.bootstrap_seed)
        written = simulate(pipeline.landing, config)
        print(f"{pipeline.landing}: landed {config.days} days ({len(written)} files)")
    client = MlflowClient(pipeline.mlflow_tracking_uri)
    champion = registry.lookup(client, pipeline.model_name)
    if champion:
        print(f"{pipeline.model_name}: champion is version {champion.version}")
        return
    state = training_pipeline(
        reason="bootstrap", n_iter=settings.bootstrap_n_iter, return_state=True
    )
    print(f"{pipeline.model_name}: {state.message}")
    if not registry.lookup(client, pipeline.model_name):
        raise SystemExit(f"the bootstrap training left no champion: {state.message}")


if __name__ == "__main__":
    main()
