"""The MLflow model registry as level 1 uses it: aliases, not the deprecated stages.

    challenger          the newest candidate the pipeline registered, whatever its verdict
    champion            the version the service serves; moved only by a passed gate
    previous-champion   the champion before the last move: the version to roll back to

Every registered version carries its lineage and the gate's verdict as version tags (tag
`lineage`: the fingerprint of its data, code and params, which the gate compares with the
next candidate's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from level1_ct.names import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from shared import model_card

__all__ = ["CHALLENGER", "CHAMPION", "PREVIOUS_CHAMPION"]  # with the functions below


@dataclass(frozen=True)
class ModelRef:
    """One registered version: what the service shows in GET /model."""

    name: str
    version: str
    run_id: str
    data_version: str
    alias: str = CHAMPION
    lineage: str = ""  # the lineage fingerprint; empty for versions registered before it
    registered_at: float | None = None  # Unix seconds: right after its training run
    window: str = ""  # the days it was trained on, "2026-01-01..2026-01-14" (version tag)
    # All its version tags, as read when it was looked up (a later process may read more of
    # them: level 2's production reads how CD rolls it out)
    tags: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "data_version": self.data_version,
        }


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version of the registered model; empty if nothing is registered yet."""
    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def lookup(client: MlflowClient, name: str, alias: str = CHAMPION) -> ModelRef | None:
    """The version behind `alias`, or None when the alias is not set (no champion yet)."""
    version = aliases(client, name).get(alias)
    if version is None:
        return None
    found = client.get_model_version(name, version)
    return ModelRef(
        name=name,
        version=str(found.version),
        run_id=found.run_id or "",
        data_version=found.tags.get("data_version", ""),
        alias=alias,
        lineage=found.tags.get("lineage", ""),
        registered_at=found.creation_timestamp / 1000 if found.creation_timestamp else None,
        window=found.tags.get("window", ""),
        tags=dict(found.tags),
    )


def load_model(ref: ModelRef, tracking_uri: str) -> Any:
    """The fitted Pipeline of a registered version, from the registry at `tracking_uri`."""
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=ref.uri, tracking_uri=tracking_uri, registry_uri=tracking_uri
    )
    return mlflow.sklearn.load_model(local)


REFERENCE_FILE = "reference.parquet"  # a sample of the training data, logged with the model
ATTRIBUTIONS = "attributions.json"  # mean |SHAP attribution| per feature (shared/explain.py)
ATTRIBUTION_METRIC = "attribution/"  # ... and as the run's metrics, attribution/<feature>
MODEL_CARD = model_card.FILE  # each version's card (shared/model_card.py), an artifact of its run


def reference_data(tracking_uri: str, ref: ModelRef) -> pd.DataFrame:
    """The training-data sample logged with a version: what drift is measured against."""
    path = mlflow.artifacts.download_artifacts(
        run_id=ref.run_id, artifact_path=REFERENCE_FILE, tracking_uri=tracking_uri
    )
    return pd.read_parquet(path)


def model_requirements() -> list[str]:
    """What loading a registered model needs: the locked versions of this environment."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("scikit-learn", "skops", "pandas", "numpy")]


def register(client: MlflowClient, name: str, model_uri: str, tags: dict[str, str]) -> str:
    """Register a logged model as a new version, tagged, and make it the challenger."""
    version = mlflow.register_model(model_uri, name, tags=tags).version
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    return str(version)


def promote(client: MlflowClient, name: str, version: str) -> str | None:
    """Move `champion` to `version`; the old champion keeps `previous-champion`.
    Returns the previous champion's version (None for the first champion)."""
    previous = aliases(client, name).get(CHAMPION)
    if previous is not None and previous != version:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, previous)
        client.set_model_version_tag(name, version, "previous_champion", previous)
    client.set_registered_model_alias(name, CHAMPION, version)
    return previous
