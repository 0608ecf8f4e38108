"""Save a fitted Pipeline with its lineage as files, and load it back safely.

The saved model is two files side by side: `model.skops` (the Pipeline, in skops' format,
which loads only the types we trust instead of running arbitrary pickle code) and
`model.json` (name, version and lineage). Level 0 hands these files over by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import skops.io as sio
from sklearn.pipeline import Pipeline

from shared.features import SKOPS_TRUSTED_TYPES

MODEL_FILE = "model.skops"
CARD_FILE = "model.json"
REQUIRED_CARD_KEYS = ("name", "version")


@dataclass(frozen=True)
class LoadedModel:
    """A Pipeline ready to predict, and the card that says what it is."""

    pipeline: Pipeline
    card: dict[str, Any]
    path: Path


def _check_card(card: dict[str, Any], where: Path) -> None:
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ValueError(f"{where / CARD_FILE} lacks {missing}")


def save(pipeline: Pipeline, card: dict[str, Any], folder: Path) -> Path:
    """Write `model.skops` and `model.json` into `folder`; returns the model file's path."""
    folder = Path(folder)
    _check_card(card, folder)
    folder.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, folder / MODEL_FILE)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2, default=str) + "\n")
    return folder / MODEL_FILE


def load(folder: Path) -> LoadedModel:
    """Load a saved model; the error says which file is missing."""
    folder = Path(folder)
    for name in (MODEL_FILE, CARD_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no {name} in {folder}: has the model been handed over?")
    card = json.loads((folder / CARD_FILE).read_text())
    _check_card(card, folder)
    pipeline = sio.load(folder / MODEL_FILE, trusted=SKOPS_TRUSTED_TYPES)
    return LoadedModel(pipeline=pipeline, card=card, path=folder / MODEL_FILE)
