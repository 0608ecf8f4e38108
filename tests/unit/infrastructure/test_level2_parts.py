"""Level 2's parts that need no server: which pushes deliver, the CI report, the remote."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from level2_cicd import remote, replicas, run
from level2_cicd.hook import DELETED, pushed_commits
from level2_cicd.replicas import replica_urls
from level2_cicd.report import Report, StepFailed
from level2_cicd.settings import CicdSettings

A, B = "a" * 40, "b" * 40


def test_only_a_push_that_moves_the_delivered_branch_delivers():
    lines = [
        f"{A} {B} refs/heads/main",
        f"{A} {B} refs/heads/experiment",
        f"{A} {B} refs/tags/v1",
        f"{B} {DELETED} refs/heads/main",
        "garbage",
    ]
    assert pushed_commits(lines, "main") == [B]
    assert pushed_commits(lines, "release") == []


def test_the_report_is_red_when_any_step_failed_and_lists_every_step():
    report = Report("CI", A)
    assert report.attempt("lint", lambda: "clean") == "clean"
    report.skip("images", "no engine")
    assert report.green and "**green**" in report.markdown() and report.key == f"ci-{A[:12]}"

    def failing():
        raise StepFailed("1 failed | 3 passed\nthe rest of the output")

    with pytest.raises(StepFailed):
        report.attempt("model tests", failing)
    assert not report.green and report.last_step == "model tests"
    markdown = report.markdown()
    assert "# CI for commit `aaaaaaaaaaaa`: **red**" in markdown
    # one row per step, the first line of the failure, no stray column separator
    assert "| model tests | failed | 1 failed / 3 passed |" in markdown
    assert "| images | skipped | no engine |" in markdown


def test_a_step_that_breaks_is_a_failed_step_too():
    report = Report("CD", A)
    with pytest.raises(KeyError):
        report.attempt("staging", lambda: {}["version"])
    assert report.steps == [("staging", "failed", "KeyError: 'version'")]


def test_the_remote_is_seeded_with_the_tracked_files_and_has_the_hook(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4999/api")
    settings = CicdSettings(remote=str(tmp_path / "remote.git"))
    sha = remote.create(settings)

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", settings.remote, str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True)
    assert head.stdout.strip() == sha
    assert (clone / "shared" / "train.py").exists() and (clone / "tests" / "unit").is_dir()
    assert not (clone / ".venv").exists() and not (clone / "var").exists()
    hook = tmp_path / "remote.git" / "hooks" / "post-receive"
    assert "level2_cicd.hook" in hook.read_text()
    assert "http://127.0.0.1:4999/api" in hook.read_text()
    assert hook.stat().st_mode & 0o777 == 0o700  # it may hold the Prefect API's credentials

    with pytest.raises(FileExistsError, match="--force"):
        remote.create(settings)


def test_a_remote_whose_hook_could_not_reach_prefect_is_not_created(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(RuntimeError, match="PREFECT_API_URL"):
        remote.create(CicdSettings(remote=str(tmp_path / "remote.git")))
    assert not (tmp_path / "remote.git").exists()


def test_production_replicas_are_every_address_of_their_name_or_production_alone():
    alone = CicdSettings(production_url="http://127.0.0.1:8001")
    assert replica_urls(alone) == ["http://127.0.0.1:8001"]
    named = CicdSettings(production_url="http://production:8001", production_replicas="localhost")
    assert "http://127.0.0.1:8001" in replica_urls(named)  # each address, the URL's port


def test_the_canary_drill_sets_the_fault_on_every_replica_and_fails_if_one_refuses(monkeypatch):
    posted = []

    def post(url, **kwargs):
        posted.append((url, kwargs["json"]))
        return httpx.Response(503 if "10.0.0.3" in url else 200, text="{}")

    urls = ["http://10.0.0.2:8000", "http://10.0.0.3:8000", "http://10.0.0.4:8000"]
    monkeypatch.setattr(replicas, "replica_urls", lambda settings: urls)
    monkeypatch.setattr(httpx, "post", post)
    monkeypatch.setenv("L2_SERVE_API_KEY", "a-key")
    with pytest.raises(SystemExit):  # one replica refused: the drill says so
        run.fault(CicdSettings(), error_rate=0.5, delay_ms=0)
    assert posted == [(f"{url}/admin/fault", {"error_rate": 0.5, "delay_ms": 0}) for url in urls]
