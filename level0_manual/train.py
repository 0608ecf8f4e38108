"""Level 0, step 3: a data scientist trains the churn model by hand and exports a file.

Everything here is a person's choice, made once: which batches to use, when to train,
what to log. The MLflow calls are explicit `mlflow.log_*` calls, as a person writes them
in a notebook; nothing is registered, deployed or scheduled. The output is a model file
in `export_dir` that someone must hand over to the service (step 4).
"""

from __future__ import annotations

import getpass
import sys
import warnings
from functools import cache
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import model_card, model_file
from shared.data import (
    BATCH_NAME,
    day_of,
    label_file_for,
    labelled_feature_files,
    load_labelled,
    misnamed_files,
)
from shared.evaluate import Evaluation, beats_baseline, evaluate
from shared.features import SKOPS_TRUSTED_TYPES, feature_frame
from shared.gate import Check, Verdict
from shared.lineage import Lineage
from shared.model_card import CardFacts
from shared.schema import LABEL_COLUMNS, MODEL_NAME
from shared.servers import is_healthy
from shared.train import TrainingConfig, ablation, split_holdout, train, train_baseline
from shared.validation import ValidationResult, validate_file


class TrainSettings(BaseSettings):
    """Settings of the level-0 training script, from L0_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="L0_", frozen=True)

    landing: Path = Path("var/landing")
    export_dir: Path = Path("var/level0/exported")
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", validation_alias="MLFLOW_TRACKING_URI"
    )
    experiment: str = "level0-manual"
    model_name: str = MODEL_NAME
    n_iter: int = 10
    seed: int = 42
    min_auc_lift: float = 0.05  # the model must beat the dummy's ROC AUC by this much
    # Features the model must not use, e.g. L0_DROPPED_FEATURES='["avg_delivery_minutes"]'
    dropped_features: tuple[str, ...] = ()


@cache
def get_settings() -> TrainSettings:
    return TrainSettings()


class TrainingRefused(RuntimeError):
    """Training stopped before exporting anything; the message says why."""


def _check_tracking_server(uri: str) -> None:
    # MLflow's client retries an unreachable server for minutes; say it at once instead.
    if uri.startswith("http") and not is_healthy(f"{uri}/health", timeout=3):
        raise TrainingRefused(
            f"the MLflow tracking server at {uri} is not reachable: start it with "
            "'make mlflow' in another terminal, or set MLFLOW_TRACKING_URI"
        )


def _print_metrics(model: Evaluation, baseline: Evaluation) -> None:
    print(f"  {'metric':<10} {'model':>8} {'baseline':>9}")
    for name, value in model.overall.items():
        print(f"  {name:<10} {value:>8.3f} {baseline.overall[name]:>9.3f}")


# The person's steps and rules, as functions `make compare` calls too:


def evaluate_with_baseline(
    model, train_frame: pd.DataFrame, holdout: pd.DataFrame
) -> tuple[Evaluation, Evaluation]:
    """The model and a dummy baseline fitted on the same training rows, on the hold-out."""
    return evaluate(model, holdout), evaluate(train_baseline(train_frame), holdout)


def refuse_bad_batches(reports: dict[str, ValidationResult]) -> None:
    """Train only when every batch and label file meets the data contract: a bad one
    refuses the whole training (the person fixes or removes it, and trains again)."""
    bad = {name: r for name, r in reports.items() if not r.ok}
    if bad:
        lines = "\n".join(f"  {name}: {r.summary()}" for name, r in bad.items())
        raise TrainingRefused(f"batches break the data contract, fix or remove them:\n{lines}")


def refuse_below_baseline(
    evaluation: Evaluation, baseline: Evaluation, min_auc_lift: float
) -> None:
    """Export only a model that beats the dummy baseline's hold-out ROC AUC by `min_auc_lift`."""
    if not beats_baseline(evaluation, baseline, min_auc_lift):
        raise TrainingRefused(
            f"hold-out ROC AUC {evaluation.overall['roc_auc']:.3f} does not beat the baseline's "
            f"{baseline.overall['roc_auc']:.3f} by {min_auc_lift}: not exported"
        )


# Who judged the model, in its card: a person, once, on one number
MANUAL_JUDGE = "No gate judged it. The one check the person who trained it made"


def manual_verdict(evaluation: Evaluation, baseline: Evaluation, min_auc_lift: float) -> Verdict:
    """The one check level 0 makes (`refuse_below_baseline`), as the model card reports a
    gate's checks. The card shows the groups' rates and gaps too: here nobody holds them."""
    auc, bar = evaluation.overall["roc_auc"], baseline.overall["roc_auc"] + min_auc_lift
    check = Check("hold-out ROC AUC over the baseline's", auc >= bar, auc, bar,
                  f"baseline {baseline.overall['roc_auc']:.3f} + {min_auc_lift}")  # fmt: skip
    return Verdict((check,))


def run(settings: TrainSettings) -> dict:
    """Train, evaluate, log to MLflow by hand and export; returns the exported model card."""
    _check_tracking_server(settings.mlflow_tracking_uri)
    files = labelled_feature_files(settings.landing)
    if len(files) < 2:
        raise TrainingRefused(
            f"{len(files)} labelled batches in {settings.landing}: need 2 or more (make data)"
        )
    print(
        f"[1/5] data: {len(files)} labelled daily batches, {day_of(files[0])} .. {day_of(files[-1])}"
    )
    for path in misnamed_files(settings.landing):
        print(f"      ignored {path.parent.name}/{path.name}: name is not {BATCH_NAME}")

    # The person checks the batches and their labels against the contract before trusting them.
    labels = [label_file_for(path) for path in files]
    reports = {path.name: validate_file(path) for path in files}
    reports |= {
        f"labels/{path.name}": validate_file(path, columns=LABEL_COLUMNS, row_rules=())
        for path in labels
    }
    refuse_bad_batches(reports)
    print("[2/5] validation: every batch and label file meets the data contract")

    try:
        frame = load_labelled(files)
    except ValueError as mismatch:
        raise TrainingRefused(str(mismatch)) from None
    config = TrainingConfig(
        n_iter=settings.n_iter, seed=settings.seed, dropped_features=settings.dropped_features
    )
    train_frame, holdout = split_holdout(frame, config.holdout_fraction)
    print(
        f"[3/5] training on {len(train_frame)} rows, {config.n_iter} candidates x {config.cv_folds} folds ..."
    )
    result = train(train_frame, config)
    evaluation, baseline = evaluate_with_baseline(result.pipeline, train_frame, holdout)
    print(
        f"      best cv ROC AUC {result.cv_score:.3f} in {result.seconds:.0f} s; hold-out ({len(holdout)} rows, newest days):"
    )
    _print_metrics(evaluation, baseline)
    refuse_below_baseline(evaluation, baseline, settings.min_auc_lift)

    # The data version covers what the model learned from: the features and their labels.
    lineage = Lineage.of(files + labels, {**result.params, **ablation(config)}, evaluation.overall)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name=f"manual-{lineage.trained_at}") as run:
        mlflow.set_tags({**lineage.tags(), "level": "0", "trained_by": getpass.getuser()})
        mlflow.log_params(result.params)
        mlflow.log_params(
            {"train_rows": len(train_frame), "holdout_rows": len(holdout), "n_iter": config.n_iter,
             "cv_folds": config.cv_folds, "seed": config.seed, **ablation(config)}
        )  # fmt: skip
        mlflow.log_metrics(evaluation.flat())
        mlflow.log_metrics(baseline.flat("baseline/"))
        mlflow.log_metric("cv_roc_auc", result.cv_score)
        mlflow.log_dict({n: r.to_dict() for n, r in reports.items()}, "data_validation.json")
        mlflow.log_dict(lineage.to_dict(), "lineage.json")
        # MLflow hints that int columns cannot hold missing values; the contract forbids
        # nulls in every feature, so the inferred int schema is the right one.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        mlflow.sklearn.log_model(
            result.pipeline,
            name="model",
            input_example=feature_frame(holdout.head(3)),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    print(
        f"[4/5] logged to MLflow: {settings.mlflow_tracking_uri} experiment '{settings.experiment}', run {run.info.run_id}"
    )

    card = {
        "name": settings.model_name,
        "version": run.info.run_id[:8],
        "mlflow_run_id": run.info.run_id,
        "mlflow_tracking_uri": settings.mlflow_tracking_uri,
        **lineage.to_dict(),
    }
    path = model_file.save(result.pipeline, card, settings.export_dir)
    readable = model_card.render(CardFacts(
        model_name=settings.model_name, version=card["version"],
        window=f"{day_of(files[0])}..{day_of(files[-1])}", train_rows=len(train_frame),
        holdout_rows=len(holdout), evaluation=evaluation, baseline=baseline,
        verdict=manual_verdict(evaluation, baseline, settings.min_auc_lift), lineage=lineage,
        run=run.info.run_id, judge=MANUAL_JUDGE,
    ))  # fmt: skip
    (settings.export_dir / model_card.FILE).write_text(readable)
    mlflow.log_text(readable, model_card.FILE, run_id=run.info.run_id)
    print(f"[5/5] exported {path} (+ {model_file.CARD_FILE}, {model_card.FILE})")
    print("      next, by hand: make level0-handoff, then restart the service")
    return card


def main() -> None:
    try:
        run(get_settings())
    except TrainingRefused as refused:
        sys.exit(f"training refused: {refused}")
    except MlflowException as failed:
        sys.exit(f"training failed while logging to MLflow: {failed.message}")


if __name__ == "__main__":
    main()
