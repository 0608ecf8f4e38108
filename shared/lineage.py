"""Where a model came from: the data it saw (content hash), the code that trained it (git sha),
its parameters and metrics. Every trained model carries this record.
"""

from __future__ import annotations

import hashlib
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
    """The git commit of the code, with '-dirty' if it has uncommitted changes.

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
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


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
