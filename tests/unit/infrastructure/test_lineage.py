"""Lineage: the data version follows the content of the training files, the code version
follows git."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from shared.lineage import Lineage, code_version, data_version, fingerprint


def write(folder: Path, files: dict[str, bytes]) -> list[Path]:
    paths = []
    for name, content in files.items():
        (folder / name).write_bytes(content)
        paths.append(folder / name)
    return paths


def test_same_files_same_version_in_any_order(tmp_path: Path):
    files = write(tmp_path, {"a.parquet": b"1", "b.parquet": b"2"})
    assert data_version(files) == data_version(list(reversed(files)))
    assert data_version(files).startswith("sha256:")


def test_changing_one_byte_changes_the_version(tmp_path: Path):
    files = write(tmp_path, {"a.parquet": b"1", "b.parquet": b"2"})
    before = data_version(files)
    files[1].write_bytes(b"3")
    assert data_version(files) != before


def test_adding_a_file_changes_the_version(tmp_path: Path):
    files = write(tmp_path, {"a.parquet": b"1", "b.parquet": b"2"})
    more = files + write(tmp_path, {"c.parquet": b"3"})
    assert data_version(more) != data_version(files)


def test_code_version_is_the_git_commit_and_marks_uncommitted_changes(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("CODE_VERSION", raising=False)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "c")
    sha = git("rev-parse", "HEAD")
    assert code_version(tmp_path) == sha
    (tmp_path / "f.py").write_text("x = 2\n")
    edited = code_version(tmp_path)
    assert re.fullmatch(sha + r"-dirty\.[0-9a-f]{8}", edited)
    assert code_version(tmp_path) == edited  # the same edits, the same version
    (tmp_path / "f.py").write_text("x = 3\n")
    assert code_version(tmp_path) not in (edited, sha)  # other edits, another version


def test_code_version_outside_git_is_unknown(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("CODE_VERSION", raising=False)
    assert code_version(tmp_path) == "unknown"


def test_code_version_in_an_image_is_the_commit_it_was_built_from(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CODE_VERSION", "abc123")
    assert code_version(tmp_path) == "abc123"


def test_lineage_records_data_code_params_and_metrics(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("CODE_VERSION", raising=False)
    files = write(tmp_path, {"2026-01-02.parquet": b"2", "2026-01-01.parquet": b"1"})
    lineage = Lineage.of(files, {"learning_rate": 0.1}, {"roc_auc": 0.8})
    tags = lineage.tags()
    assert tags["data_version"] == data_version(files)
    assert tags["data_files"] == "2026-01-01.parquet..2026-01-02.parquet (2)"
    assert tags["code_version"] == lineage.code_version
    # tests run in a checkout
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty\.[0-9a-f]{8})?", lineage.code_version)
    assert lineage.to_dict()["params"] == {"learning_rate": 0.1}
    assert lineage.to_dict()["metrics"] == {"roc_auc": 0.8}


def test_the_fingerprint_names_data_code_and_params_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("CODE_VERSION", "abc123")
    files = write(tmp_path, {"2026-01-01.parquet": b"1"})
    one = Lineage.of(files, {"learning_rate": 0.1, "seed": 42}, {"roc_auc": 0.8})
    again = Lineage.of(files, {"seed": 42, "learning_rate": 0.1}, {"roc_auc": 0.81})
    assert one.fingerprint() == again.fingerprint()  # metrics and order are not the recipe
    assert one.fingerprint().startswith("sha256:")
    base = ("sha256:d", "abc123", {"learning_rate": 0.1})
    assert fingerprint(*base) == fingerprint("sha256:d", "abc123", {"learning_rate": "0.1"})
    others = [("sha256:e", "abc123", {"learning_rate": 0.1}),
              ("sha256:d", "abc124", {"learning_rate": 0.1}),
              ("sha256:d", "abc123", {"learning_rate": 0.2})]  # fmt: skip
    assert len({fingerprint(*base), *(fingerprint(*o) for o in others)}) == 4


def test_code_of_unknown_version_has_no_fingerprint():
    assert fingerprint("sha256:d", "unknown", {}) is None
