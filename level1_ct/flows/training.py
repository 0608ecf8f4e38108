"""Level 1's training pipeline: level 0's manual steps, made a Prefect flow that runs itself.

    ingest -> validate data -> check drift -> train -> evaluate -> gate -> register

Each step is a task, so each shows up in the Prefect UI with its own state, logs and timing.
The MLflow run records the same story: data version and window, validation reports, drift,
metrics of the candidate, the dummy baseline and the champion on the same hold-out, the gate's
verdict, and the registered version. The steps call `shared/` for all model logic.

A batch that breaks the data contract stops the run before training: the run fails with
the column and the rule in its state message and in the MLflow run, and the batch moves to
`<landing>/quarantine/` (nothing is deleted) so that the next run can proceed without it.
A file that cannot be read as a batch (empty, truncated, not Parquet) is such a batch too,
and so is a `*.parquet` file whose name is not a day (`shared.data.BATCH_NAME`). A second
bad file of the same name is quarantined beside the first, under a numbered name.
Tasks that talk to MLflow retry when it is briefly unreachable; the gate never retries.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed

from level1_ct import names, registry, reports, training_rules
from level1_ct.flows.retrying import io_task, step
from level1_ct.settings import PipelineSettings, get_settings
from shared.data import (
    day_of,
    feature_files,
    label_file_for,
    labelled_feature_files,
    load_labelled,
    misnamed_files,
    read_batch,
)
from shared.evaluate import Evaluation
from shared.explain import Explainer, global_attributions, summary_plot
from shared.features import SKOPS_TRUSTED_TYPES, feature_frame
from shared.gate import ChampionLineage, Verdict
from shared.lineage import Lineage
from shared.model_card import CardFacts, render
from shared.schema import LABEL_COLUMNS
from shared.train import (
    PARAM_SPACE,
    TrainingConfig,
    TrainingResult,
    ablation,
    split_holdout,
    train,
)
from shared.validation import ValidationResult, validate_file

QUARANTINE = names.QUARANTINE


class DataContractViolation(RuntimeError):
    """A batch broke the data contract: the run stops before training."""


@dataclass(frozen=True)
class Batches:
    """What one run uses: labelled batches in the window, their labels, and the newer
    feature batches whose labels are still to come (validated and checked for drift); and
    the `*.parquet` files in the landing folder whose name is not a day (quarantined)."""

    labelled: list[Path]
    labels: list[Path]
    unlabelled: list[Path]
    misnamed: list[Path] = field(default_factory=list)

    @property
    def window(self) -> str:
        return f"{day_of(self.labelled[0])}..{day_of(self.labelled[-1])}"

    @property
    def newest(self) -> Path:
        return (self.unlabelled or self.labelled)[-1]


# ---- the steps ----------------------------------------------------------------------------


@step
def ingest(landing: Path, window_days: int) -> Batches:
    """The newest `window_days` labelled batches, and any newer batch still without labels."""
    labelled = training_rules.window(labelled_feature_files(landing), window_days)
    unlabelled = [p for p in feature_files(landing) if day_of(p) > day_of(labelled[-1])]
    misnamed = misnamed_files(landing)
    batches = Batches(labelled, [label_file_for(p) for p in labelled], unlabelled, misnamed)
    get_run_logger().info(
        "window %s: %d labelled batches, %d newer without labels yet, %d misnamed files",
        batches.window, len(labelled), len(unlabelled), len(misnamed),
    )  # fmt: skip
    return batches


def quarantine(landing: Path, path: Path, result: ValidationResult) -> Path:
    """Move a rejected file out of the landing folder, with the reason beside it.

    Nothing already in quarantine is replaced: when `<day>.parquet` (or its reason) is there
    from an earlier bad export, this one becomes `<day>.1.parquet`, `<day>.2.parquet`, ...
    with its own `<day>.N.reason.json`. The reason file is created first, exclusively, so
    that two runs quarantining at once cannot take the same name.
    """
    folder = Path(landing) / QUARANTINE / path.parent.name
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = path.stem, path.suffix
    for n in itertools.count():
        target = folder / (f"{stem}.{n}{suffix}" if n else path.name)
        reason_file = target.with_suffix(".reason.json")
        if target.exists():
            continue
        try:
            reason_file.touch(exist_ok=False)  # claims the name
        except FileExistsError:
            continue
        break
    try:
        shutil.move(path, target)
    except BaseException:
        reason_file.unlink()
        raise
    reason = {"file": str(path), "quarantined_as": target.name, "violations": result.to_dict()}
    reason_file.write_text(json.dumps(reason, indent=2, default=str))
    return target


def _name(path: Path) -> str:
    """How a landed file is named in results: `2026-01-05.parquet`, `labels/2026-01-05.parquet`."""
    return f"labels/{path.name}" if path.parent.name == "labels" else path.name


def _validate(path: Path) -> ValidationResult:
    if path.parent.name == "labels":
        return validate_file(path, columns=LABEL_COLUMNS, row_rules=())
    return validate_file(path)


@step
def validate_data(batches: Batches, landing: Path) -> dict[str, dict]:
    """Every batch and label file against the data contract; quarantine what fails, then stop."""
    # validate_file reports a file it cannot read (empty, truncated, not Parquet) as a
    # violation of rule `readable`, and a misnamed one as rule `file_name`: quarantined like
    # any other bad batch, never an exception.
    files = [*batches.labelled, *batches.unlabelled, *batches.labels, *batches.misnamed]
    checked = {path: _validate(path) for path in files}
    results = {_name(path): result for path, result in checked.items()}
    violation = training_rules.contract(results)
    if violation:
        for path, result in checked.items():
            if not result.ok:
                quarantine(landing, path, result)
        raise DataContractViolation(violation)
    get_run_logger().info("%d files meet the data contract", len(results))
    return {name: r.to_dict() for name, r in results.items()}


@step
def check_drift(newest: pd.DataFrame, reference: pd.DataFrame) -> reports.DriftResult:
    """Evidently drift of the newest batch against the reference: recorded, never blocking."""
    result = reports.data_drift(newest, reference)
    logger = get_run_logger()
    if result.drifted:
        logger.warning("drift in %.0f%% of features: %s", 100 * result.share, result.drifted)
    else:
        logger.info("no feature drifted")
    return result


@step
def train_candidate(train_frame: pd.DataFrame, config: TrainingConfig) -> TrainingResult:
    result = train(train_frame, config)
    get_run_logger().info(
        "best cv ROC AUC %.3f in %.0f s: %s", result.cv_score, result.seconds, result.params
    )
    return result


@step
def evaluate_models(
    result: TrainingResult, train_frame: pd.DataFrame, holdout: pd.DataFrame, champion: Any
) -> tuple[Evaluation, Evaluation, Evaluation | None]:
    """The candidate, the dummy baseline and the champion, all on the same hold-out."""
    evaluated = training_rules.evaluations(result.pipeline, train_frame, holdout, champion)
    get_run_logger().info("candidate on %d hold-out rows: %s", len(holdout), evaluated[0].overall)
    return evaluated


@io_task
def load_champion(tracking_uri: str, name: str) -> tuple[registry.ModelRef, Any] | None:
    """The current champion and its Pipeline, or None before the first champion."""
    ref = registry.lookup(MlflowClient(tracking_uri), name)
    return None if ref is None else (ref, registry.load_model(ref, tracking_uri))


@step
def gate(
    candidate: Evaluation,
    baseline: Evaluation,
    champion: Evaluation | None,
    settings: PipelineSettings,
    lineage: str | None = None,
    champion_lineage: ChampionLineage | None = None,
) -> Verdict:
    """The model gate (shared/gate.py). Never retried: a rejection is an answer, not an error."""
    verdict = training_rules.gate(
        (candidate, baseline, champion), settings, lineage, champion_lineage
    )
    logger = get_run_logger()
    (logger.info if verdict.passed else logger.warning)("gate %s", verdict.summary())
    return verdict


@io_task
def open_run(tracking_uri: str, experiment: str, reason: str) -> str:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(
        experiment_id,
        run_name=f"ct-{flow_run.get_name() or 'local'}",
        tags={"level": "1", "trigger": reason, "prefect_flow_run_id": str(flow_run.get_id())},
    )
    return run.info.run_id


@io_task
def record(
    tracking_uri: str,
    run_id: str,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    documents: dict[str, Any] | None = None,
    status: str | None = None,
) -> None:
    """Log to the run: params, metrics, tags, JSON documents; `status` ends the run.
    Params, metrics and tags go in one request (a training run has about 270 of them)."""
    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()],
        params=[Param(key, str(value)) for key, value in (params or {}).items()],
        tags=[RunTag(key, str(value)[:5000]) for key, value in (tags or {}).items()],
    )
    for name, document in (documents or {}).items():
        client.log_dict(run_id, document, name)
    if status:
        client.set_terminated(run_id, status)


@io_task
def register(
    settings: PipelineSettings,
    run_id: str,
    result: TrainingResult,
    holdout: pd.DataFrame,
    reference: pd.DataFrame,
    version_tags: dict[str, str],
    drift: reports.DriftResult | None,
) -> str:
    """Log the model (signature, input example), register a version, make it the challenger."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    # MLflow hints that int columns cannot hold missing values; the contract forbids nulls
    # in every feature, so the inferred int schema is the right one.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        info = mlflow.sklearn.log_model(
            result.pipeline,
            name="model",
            input_example=feature_frame(holdout.head(3)),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            # Stated, not inferred: inference runs the model in a subprocess (~10 s a run).
            pip_requirements=registry.model_requirements(),
        )
        # The training data's sample travels with the model: monitoring compares live
        # traffic against the data the serving model learned from.
        reference_file = Path(tmp) / registry.REFERENCE_FILE
        reference.to_parquet(reference_file, index=False)
        mlflow.log_artifact(str(reference_file))
        if drift is not None:
            drift_file = Path(tmp) / "data_drift.html"
            drift.snapshot.save_html(str(drift_file))
            mlflow.log_artifact(str(drift_file))
    client = MlflowClient(settings.mlflow_tracking_uri)
    return registry.register(client, settings.model_name, info.model_uri, version_tags)


@io_task
def explain_globally(
    settings: PipelineSettings, run_id: str, pipeline: Any, holdout: pd.DataFrame
) -> dict[str, float]:
    """What the version leans on (shared/explain.py): mean |SHAP attribution| per feature on
    the hold-out, as metrics `attribution/<feature>`, `attributions.json` and a bar chart."""
    explainer, frame = Explainer(pipeline), feature_frame(holdout)
    means = global_attributions(explainer, frame)
    client = MlflowClient(settings.mlflow_tracking_uri)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(registry.ATTRIBUTION_METRIC + k, v, now, 0) for k, v in means.items()],
    )
    client.log_dict(run_id, {"on": f"{len(frame)} hold-out rows", "unit": "log-odds",
                             "mean_abs_attribution": means}, registry.ATTRIBUTIONS)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "attributions.png"
        summary_plot(means, len(frame), plot)
        client.log_artifact(run_id, str(plot))
    return means


@io_task
def write_card(settings: PipelineSettings, run_id: str, facts: CardFacts) -> str:
    """The version's model card (shared/model_card.py) as the run's `model_card.md`, linked
    from the version by its tag `model_card` and its description (the registry's page)."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.log_text(run_id, render(facts), registry.MODEL_CARD)
    link = f"runs:/{run_id}/{registry.MODEL_CARD}"
    client.set_model_version_tag(settings.model_name, facts.version, "model_card", link)
    outcome = "passed" if facts.verdict.passed else "rejected by"
    client.update_model_version(settings.model_name, facts.version, description=(
        f"Trained on {facts.window}; hold-out ROC AUC "
        f"{facts.evaluation.overall['roc_auc']:.3f}; {outcome} the gate. Model card: "
        f"`{registry.MODEL_CARD}` among the artifacts of run {run_id} ({link})."
    ))  # fmt: skip
    return link


@io_task
def promote(settings: PipelineSettings, version: str) -> str | None:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return registry.promote(client, settings.model_name, version)


@io_task
def champion_reference(tracking_uri: str, ref: registry.ModelRef) -> pd.DataFrame:
    return registry.reference_data(tracking_uri, ref)


# ---- the flow -----------------------------------------------------------------------------


@flow(name=names.TRAINING)
def training_pipeline(
    reason: str = "manual",
    window_days: int | None = None,
    n_iter: int | None = None,
    fixed_params: dict[str, Any] | None = None,
    promote_on_pass: bool = True,
):
    """Train on the newest labelled batches and promote the result if it passes the gate.

    `reason` says what started the run (schedule, new-data, drift, manual); `window_days` and
    `n_iter` override the settings; `fixed_params` pins hyper-parameters (an exercise: force
    a worse model and watch the gate reject it). With `promote_on_pass=False` (level 2's
    staging runs) a passing candidate stays `challenger`: the rollout decides.
    """
    settings = get_settings()
    uri = settings.mlflow_tracking_uri
    window_days = window_days or settings.window_days
    try:
        training_rules.window(labelled_feature_files(settings.landing), window_days)
    except training_rules.NotEnoughData:
        # Early in a replay, batches land before their labels: not a failure, just early.
        return Completed(message="skipped: fewer than 2 labelled batches have landed so far")
    run_id = open_run(uri, settings.experiment, reason)
    try:
        return _run(settings, run_id, window_days, n_iter, fixed_params, promote_on_pass)
    except BaseException:
        # Whatever stopped the run, the MLflow run must not stay RUNNING forever.
        with contextlib.suppress(Exception):
            MlflowClient(uri).set_terminated(run_id, "FAILED")
        raise


def _run(
    settings: PipelineSettings,
    run_id: str,
    window_days: int,
    n_iter: int | None,
    fixed_params: dict[str, Any] | None,
    promote_on_pass: bool = True,
):
    """The pipeline's steps after its MLflow run is open (see training_pipeline)."""
    uri, logger = settings.mlflow_tracking_uri, get_run_logger()
    batches = ingest(settings.landing, window_days)
    try:
        validation = validate_data(batches, settings.landing)
    except DataContractViolation as violation:
        record(uri, run_id, tags={"stopped_at": "validate_data", "stop_reason": str(violation)},
               params={"window": batches.window}, status="FAILED")  # fmt: skip
        raise

    frame = load_labelled(batches.labelled)
    train_frame, holdout = split_holdout(frame, settings.holdout_fraction)
    current = load_champion(uri, settings.model_name)
    reference = training_rules.reference(train_frame, settings)
    drift = check_drift(
        read_batch(batches.newest),
        champion_reference(uri, current[0]) if current else reference,
    )

    space = {k: [v] for k, v in fixed_params.items()} if fixed_params else dict(PARAM_SPACE)
    config = TrainingConfig(
        n_iter=n_iter or settings.n_iter, seed=settings.seed,
        holdout_fraction=settings.holdout_fraction, param_space={**PARAM_SPACE, **space},
        dropped_features=settings.dropped_features,
    )  # fmt: skip
    result = train_candidate(train_frame, config)
    candidate, baseline, champion = evaluate_models(
        result, train_frame, holdout, current[1] if current else None
    )
    # The recipe: data, code, and what fixes the fit (the search's pick, seed, hold-out)
    recipe = {**result.params, "seed": config.seed, "holdout_fraction": config.holdout_fraction,
              **ablation(config)}  # fmt: skip
    lineage = Lineage.of(batches.labelled + batches.labels, recipe, candidate.overall)
    champion_lineage = ChampionLineage(current[0].version, current[0].lineage) if current else None
    verdict = gate(candidate, baseline, champion, settings, lineage.fingerprint(), champion_lineage)

    run_tags = {
        **lineage.tags(),
        "lineage": lineage.fingerprint() or "",
        "gate": "passed" if verdict.passed else "rejected",
        "gate_summary": verdict.summary(),
        "champion_before": current[0].version if current else "",
    }
    record(
        uri, run_id,
        params={**result.params, "window": batches.window, "window_days": window_days,
                "train_rows": len(train_frame), "holdout_rows": len(holdout),
                "n_iter": config.n_iter, "seed": config.seed, **ablation(config)},
        metrics={**candidate.flat(), **baseline.flat("baseline/"),
                 **(champion.flat("champion/") if champion else {}),
                 "cv_roc_auc": result.cv_score, **{f"data/{k}": v for k, v in drift.metrics().items()}},
        tags=run_tags,
        documents={"data_validation.json": validation, "lineage.json": lineage.to_dict(),
                   "gate.json": {"passed": verdict.passed,
                                 "checks": [c.__dict__ for c in verdict.checks]}},
    )  # fmt: skip
    version_tags = {
        "data_version": lineage.data_version,
        "code_version": lineage.code_version,
        "prefect_flow_run_id": str(flow_run.get_id()),
        "window": batches.window,
        "gate": run_tags["gate"],
        "lineage": run_tags["lineage"],
    }
    if verdict.same_as_champion:
        # The champion's own recipe again, so the same model: no twin in the registry.
        twin_of = current[0].version
        record(uri, run_id, tags={"registered_version": "", "promoted": "false",
                                  "twin_of": twin_of}, status="FINISHED")  # fmt: skip
        message = (f"rejected by the gate: {'; '.join(verdict.reasons)}; not registered "
                   f"(version {twin_of} is this model)")  # fmt: skip
        logger.warning(message)
        return Completed(message=message, data={
            "version": None, "gate": "rejected", "window": batches.window, "twin_of": twin_of,
            "roc_auc": candidate.overall["roc_auc"], "reasons": verdict.reasons})  # fmt: skip
    version = register(settings, run_id, result, holdout, reference, version_tags, drift)
    attributions = explain_globally(settings, run_id, result.pipeline, holdout)
    write_card(settings, run_id, CardFacts(
        model_name=settings.model_name, version=version, window=batches.window,
        train_rows=len(train_frame), holdout_rows=len(holdout), evaluation=candidate,
        baseline=baseline, verdict=verdict, lineage=lineage, run=run_id,
        champion=(current[0].version, champion) if current and champion else None,
        attributions=attributions,
    ))  # fmt: skip
    outcome = {"version": version, "gate": run_tags["gate"], "window": batches.window,
               "roc_auc": candidate.overall["roc_auc"], "reasons": verdict.reasons}  # fmt: skip
    if verdict.passed and not promote_on_pass:
        record(uri, run_id, tags={"registered_version": version, "promoted": "false",
                                  "rollout": "pending"}, status="FINISHED")  # fmt: skip
        message = f"version {version} passed the gate; left as challenger for the rollout"
        logger.info(message)
        return Completed(message=message, data=outcome)
    if verdict.passed:
        previous = promote(settings, version)
        record(
            uri, run_id, tags={"registered_version": version, "promoted": "true"}, status="FINISHED"
        )
        logger.info("version %s is the champion (was %s)", version, previous)
        return Completed(message=f"version {version} promoted to champion", data=outcome)
    record(
        uri, run_id, tags={"registered_version": version, "promoted": "false"}, status="FINISHED"
    )
    message = f"version {version} rejected by the gate: {'; '.join(verdict.reasons)}"
    logger.warning(message)
    return Completed(message=message, data=outcome)


if __name__ == "__main__":
    training_pipeline()
