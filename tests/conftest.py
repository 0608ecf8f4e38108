"""Fixtures shared by every test kind: a small simulated landing folder and a model trained
on it once per session (training is the slow part)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from shared.data import labelled_feature_files, load_labelled
from shared.simulator import SimulationConfig, simulate
from shared.train import TrainingConfig, TrainingResult, split_holdout, train

TESTS = Path(__file__).parent

# The tiers (tests/tiers.toml): `--tier NAME`, a per-test timeout and a time budget per tier
pytest_plugins = ["tests.tiers"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its folders: its kind (tests/unit/, integration/, e2e/, docker/)
    and, for a unit test, its ML Test Score section (tests/unit/data/, model/,
    infrastructure/: one step each of level 2's CI). --strict-markers fails on a folder
    whose marker pyproject.toml does not declare."""
    for item in items:
        for folder in Path(item.path).relative_to(TESTS).parts[:-1]:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(autouse=True, scope="module")
def _environment_per_module() -> Iterator[None]:
    """Whatever a module's fixtures put in os.environ goes when the module ends (MLflow's
    `set_tracking_uri`, for one, exports MLFLOW_TRACKING_URI): a later module's settings
    must not read an earlier module's servers."""
    with _environment_restored():
        yield


@pytest.fixture(autouse=True)
def _environment_per_test() -> Iterator[None]:
    """The same for each test."""
    with _environment_restored():
        yield


@contextmanager
def _environment_restored() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        if os.environ != saved:
            os.environ.clear()
            os.environ.update(saved)


SMALL = SimulationConfig(scenario="stable", days=10, seed=7, rows_per_day=400, label_delay_days=2)
FAST = TrainingConfig(n_iter=3, cv_folds=3, seed=7)


@pytest.fixture(scope="session")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    simulate(folder, SMALL)
    return folder


@pytest.fixture(scope="session")
def labelled(landing: Path) -> pd.DataFrame:
    return load_labelled(labelled_feature_files(landing))


@pytest.fixture(scope="session")
def split(labelled: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_holdout(labelled, 0.2)


@pytest.fixture(scope="session")
def trained(split: tuple[pd.DataFrame, pd.DataFrame]) -> TrainingResult:
    return train(split[0], FAST)
