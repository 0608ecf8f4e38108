"""Fixtures shared by every test kind: a small simulated landing folder and a model trained
on it once per session (training is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shared.data import labelled_feature_files, load_labelled
from shared.simulator import SimulationConfig, simulate
from shared.train import TrainingConfig, TrainingResult, split_holdout, train

TESTS = Path(__file__).parent
KINDS = ("unit", "integration", "e2e", "docker")
# The ML Test Score's sections (Breck et al., 2017): tests/unit/<section>/, one step each of
# level 2's CI (`make test-ml SECTION=...` collects only that folder's modules)
SECTIONS = ("data", "model", "infrastructure")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its folders: tests/unit/model/ -> unit and model, and so on."""
    for item in items:
        folders = Path(item.path).relative_to(TESTS).parts[:-1]
        for name in folders[:2]:
            if name in KINDS or (name in SECTIONS and folders[0] == "unit"):
                item.add_marker(getattr(pytest.mark, name))


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
