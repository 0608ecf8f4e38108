"""The git remote that level 2 delivers from: a bare repository whose post-receive hook starts
the CI/CD flow for every push to the delivered branch.

    python -m level2_cicd.remote create [--force]   # seed it with this project's tracked files

It is seeded with one commit of the project's tracked files (the ML code, its tests, the
flows), so a learner clones it, edits, commits and pushes as with any team remote. In the
embedded mode it is a folder (`L2_REMOTE`, default var/level2/remote.git) and `git push`
runs the hook on the laptop; in the container stack the git server serves the same layout.
"""

from __future__ import annotations

import argparse
import base64
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from level2_cicd.settings import CicdSettings, get_settings

ROOT = Path(__file__).resolve().parents[1]
# What the hook needs from the pusher's side to reach the Prefect server
HOOK_ENV = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "L2_BRANCH")
SEED_AUTHOR = ["-c", "user.name=MLOps levels", "-c", "user.email=seed@mlops-levels.local"]


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def git_auth_env(settings: CicdSettings) -> dict[str, str]:
    """What makes every git command of this process sign in to the git server (HTTP basic,
    through git's environment-borne config: no password in a URL, a command line or a
    deployment's pull step). Empty when the remote needs no login."""
    if not settings.git_username:
        return {}
    login = f"{settings.git_username}:{settings.git_password.get_secret_value()}"
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {base64.b64encode(login.encode()).decode()}",
    }


def tracked_files(source: Path) -> list[str]:
    """The project's files under version control (nothing of var/, .venv or .env)."""
    # safe.directory: a checkout mounted into a container belongs to another user
    files = git("-c", "safe.directory=*", "ls-files", "-z", cwd=source) if source.exists() else ""
    return files.split("\0")[:-1]


def install_hook(repo: Path, python: str = sys.executable, code: Path = ROOT) -> Path:
    """The post-receive hook: hands each push to `python -m level2_cicd.hook`. The Prefect
    API it calls is the one set when the hook is installed (HOOK_ENV)."""
    exports = "".join(
        f"export {name}={shlex.quote(os.environ[name])}\n"
        for name in HOOK_ENV
        if name in os.environ
    )
    hook = repo / "hooks" / "post-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "# Installed by level2_cicd.remote: every push to the delivered branch starts CI/CD.\n"
        f"{exports}"
        f"export PYTHONPATH={shlex.quote(str(code))}\n"
        f"exec {shlex.quote(python)} -m level2_cicd.hook\n"
    )
    hook.chmod(stat.S_IRWXU)  # it may hold the Prefect API's credentials: owner only
    return hook


def create(settings: CicdSettings, source: Path | None = ROOT, force: bool = False) -> str | None:
    """Create the bare remote, seeded with `source`'s tracked files; returns the seed commit.
    With no source (a cluster has no checkout to mount) it starts empty, hook installed: the
    team's first push fills it, and is the first commit CI checks."""
    if "PREFECT_API_URL" not in os.environ:
        raise RuntimeError("set PREFECT_API_URL: the hook starts CI through that Prefect server")
    repo = Path(settings.remote)
    if repo.exists():
        if not force:
            raise FileExistsError(f"{repo} exists: pass --force to replace it")
        shutil.rmtree(repo)
    files = tracked_files(source) if source else []
    if source and not files:
        raise RuntimeError(f"{source} is not a git checkout with tracked files to seed from")
    git("init", "--quiet", "--bare", f"--initial-branch={settings.branch}", str(repo))
    # CI checks out the pushed commit by its sha
    git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=repo)
    if source is None:
        install_hook(repo)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "seed"
        git("init", "--quiet", f"--initial-branch={settings.branch}", str(work))
        for name in files:
            if (source / name).is_file():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, work / name)
        git("add", "--all", cwd=work)
        git(*SEED_AUTHOR, "commit", "--quiet", "-m", "Seed: the ML code and its pipeline", cwd=work)
        # Seeding is not a delivery: the hook goes in after the first push
        git("push", "--quiet", str(repo.resolve()), settings.branch, cwd=work)
        sha = git("rev-parse", "HEAD", cwd=work)
    install_hook(repo)
    return sha


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create level 2's git remote.")
    parser.add_argument("command", choices=["create"])
    parser.add_argument("--force", action="store_true", help="replace an existing remote")
    args = parser.parse_args(argv)
    settings = get_settings()
    sha = create(settings, force=args.force)
    print(f"{settings.remote}: seeded at {sha[:12]}; clone it with: git clone {settings.remote}")


if __name__ == "__main__":
    main()
