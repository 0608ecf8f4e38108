"""Level 2's git server (the container stack's remote) as a real process: it seeds the remote
on its first start, asks every git request for the login, serves clone and push over git's
smart HTTP, and a push runs the hook that starts CI (here with no Prefect to reach: the
pusher is told CI did not start, and how to start it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from level2_cicd.remote import git_auth_env
from level2_cicd.settings import CicdSettings
from shared.servers import free_port, running

ROOT = Path(__file__).resolve().parents[2]
AUTHOR = ["-c", "user.name=Learner", "-c", "user.email=learner@example.org"]
USER, PASSWORD = "learner", "a-long-password"  # the server's login


def git(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    no_prompt = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    return subprocess.run(["git", *AUTHOR, *args], cwd=cwd, capture_output=True, text=True,
                          env=no_prompt)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("git-server")
    port = free_port()
    env = {
        **os.environ,
        "L2_REMOTE": str(root / "git" / "ml.git"),
        "L2_GIT_USERNAME": USER,
        "L2_GIT_PASSWORD": PASSWORD,
        "L2_GIT_SERVER_SEED": str(ROOT),
        "L2_GIT_SERVER_HOST": "127.0.0.1",
        "L2_GIT_SERVER_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",  # nothing listens
    }
    command = [sys.executable, "-m", "level2_cicd.git_server"]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/health", root / "git-server.log", env=env):
        login = CicdSettings(git_username=USER, git_password=PASSWORD)
        yield {"root": root, "url": f"{url}/ml.git", "login": git_auth_env(login)}


def test_without_the_login_git_gets_nothing(server):
    refs = httpx.get(f"{server['url']}/info/refs?service=git-upload-pack")
    assert refs.status_code == 401 and refs.headers["www-authenticate"].startswith("Basic")
    clone = git("clone", server["url"], "anonymous", cwd=server["root"])
    assert clone.returncode != 0 and not (server["root"] / "anonymous").exists()
    wrong = CicdSettings(git_username=USER, git_password="guessed")
    clone = git("clone", server["url"], "guessed", cwd=server["root"], env=git_auth_env(wrong))
    assert clone.returncode != 0, clone.stdout


def test_a_request_git_refuses_unread_gets_git_answer_not_a_server_error(server):
    # git http-backend refuses a wrong content type without reading the body: the server must
    # pass its answer on, not fail writing the rest (a 500 failed a CD clone in CI this way)
    for _ in range(3):
        refused = httpx.post(f"{server['url']}/git-upload-pack", auth=(USER, PASSWORD),
                             content=bytes(2**21), headers={"content-type": "text/plain"})  # fmt: skip
        assert refused.status_code == 415, refused.text
    refs = httpx.get(f"{server['url']}/info/refs?service=git-upload-pack", auth=(USER, PASSWORD))
    assert refs.status_code == 200 and b"refs/heads/main" in refs.content


def test_a_learner_clones_the_seeded_code_and_a_push_runs_the_ci_hook(server):
    root, login = server["root"], server["login"]
    clone = git("clone", "-q", server["url"], "work", cwd=root, env=login)
    assert clone.returncode == 0, clone.stderr
    work = root / "work"
    assert (work / "shared" / "train.py").is_file() and (work / "Makefile").is_file()
    assert not (work / ".env").exists()  # tracked files only

    (work / "README.md").write_text((work / "README.md").read_text() + "\nA learner was here.\n")
    assert git("commit", "-q", "-am", "A first change", cwd=work).returncode == 0
    pushed = git("push", "origin", "main", cwd=work, env=login)
    assert pushed.returncode == 0, pushed.stderr
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    # git shows the hook's output as `remote:` lines: it tried to start CI for this commit
    assert f"remote: CI/CD NOT started for {sha[:12]}" in pushed.stderr
    assert f"make level2-ci SHA={sha}" in pushed.stderr

    again = git("clone", "-q", server["url"], "again", cwd=root, env=login)
    assert again.returncode == 0, again.stderr
    assert git("rev-parse", "HEAD", cwd=root / "again").stdout.strip() == sha


def test_with_no_seed_the_remote_starts_empty_and_the_first_push_is_checked(tmp_path):
    """A cluster has no checkout to seed from (deploy/k8s/level2/git.yaml): the server starts
    with an empty remote, and the team's first push fills it and runs the CI hook."""
    port = free_port()
    env = {
        **os.environ,
        "L2_REMOTE": str(tmp_path / "git" / "ml.git"),
        "L2_GIT_USERNAME": USER,
        "L2_GIT_PASSWORD": PASSWORD,
        "L2_GIT_SERVER_SEED": "",
        "L2_GIT_SERVER_HOST": "127.0.0.1",
        "L2_GIT_SERVER_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",  # nothing listens
    }
    url = f"http://127.0.0.1:{port}"
    login = git_auth_env(CicdSettings(git_username=USER, git_password=PASSWORD))
    with running([sys.executable, "-m", "level2_cicd.git_server"], f"{url}/health",
                 tmp_path / "git-server.log", env=env):  # fmt: skip
        refs = httpx.get(f"{url}/ml.git/info/refs?service=git-upload-pack", auth=(USER, PASSWORD))
        assert refs.status_code == 200 and b"refs/heads/" not in refs.content  # no branch yet
        work = tmp_path / "work"
        assert git("init", "-q", "--initial-branch=main", str(work), cwd=tmp_path).returncode == 0
        (work / "README.md").write_text("The team's code.\n")
        git("add", "README.md", cwd=work)
        assert git("commit", "-q", "-m", "First", cwd=work).returncode == 0
        pushed = git("push", f"{url}/ml.git", "main", cwd=work, env=login)
        assert pushed.returncode == 0, pushed.stderr
        sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
        assert f"remote: CI/CD NOT started for {sha[:12]}" in pushed.stderr
    assert "created" in (tmp_path / "git-server.log").read_text()
