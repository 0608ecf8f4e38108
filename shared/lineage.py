"""Where a model came from: the data it saw (content hash), the code that trained it (git sha),
its parameters and metrics. Every trained model carries this record.

The first three determine the model (training is seeded): their `fingerprint` names the
recipe, so that the gate can tell a retrain of the champion's own recipe from a new model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.schema import SCHEMA_VERSION


def data_version(files: list[Path]) -> str:
    """A content hash of the training files: same bytes and names, same version.

    Renaming or editing any file changes it; the order the files are given in does not.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()[:16]


def code_version(repo: Path | None = None) -> str:
    """The git commit of the code; with uncommitted changes, '-dirty.' and a short hash of
    them (`git diff HEAD`), so that two different sets of edits are two code versions.

    Inside an image there is no .git: the image's CODE_VERSION (set at build time from the
    commit it was built from) is used instead. 'unknown' when neither is there.
    """
    if os.environ.get("CODE_VERSION", "unknown") != "unknown":
        return os.environ["CODE_VERSION"]
    cwd = repo or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not dirty:
            return sha
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--binary"], cwd=cwd, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty.{hashlib.sha256(diff).hexdigest()[:8]}"


def fingerprint(data_version: str, code_version: str, params: dict[str, Any]) -> str | None:
    """One name for a training recipe: the same data, code and parameters give the same
    fingerprint (parameter values compared as text, the way MLflow keeps them). None when
    the code is 'unknown': a recipe whose code cannot be named cannot be said to repeat."""
    if code_version == "unknown":
        return None
    recipe = {
        "data_version": data_version,
        "code_version": code_version,
        "params": {str(k): str(v) for k, v in params.items()},
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return "sha256:" + digest[:16]


@dataclass(frozen=True)
class Lineage:
    """The record a model carries: data, code, parameters, metrics, when."""

    data_version: str
    data_files: list[str]
    code_version: str
    params: dict[str, Any]
    metrics: dict[str, float]
    trained_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: str = SCHEMA_VERSION

    @classmethod
    def of(cls, files: list[Path], params: dict[str, Any], metrics: dict[str, float]) -> Lineage:
        """Lineage of a model trained now on `files` with this repository's code."""
        return cls(
            data_version=data_version(files),
            data_files=sorted(Path(f).name for f in files),
            code_version=code_version(),
            params=dict(params),
            metrics=dict(metrics),
        )

    def fingerprint(self) -> str | None:
        """The recipe's name: data version, code version and parameters (not the metrics)."""
        return fingerprint(self.data_version, self.code_version, self.params)

    def tags(self) -> dict[str, str]:
        """The lineage as MLflow tags."""
        return {
            "data_version": self.data_version,
            "data_files": f"{self.data_files[0]}..{self.data_files[-1]} ({len(self.data_files)})"
            if self.data_files
            else "",
            "code_version": self.code_version,
            "schema_version": self.schema_version,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
