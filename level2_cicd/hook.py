"""The remote's post-receive hook: each push to the delivered branch starts the CI/CD flow
for the pushed commit, through the Prefect API (run by git, on the server side of a push).

git passes one line per updated ref on stdin: `<old-sha> <new-sha> <ref>`. What this prints
is shown to the pusher as `remote: ...` lines.
"""

from __future__ import annotations

import sys

from prefect.deployments import run_deployment

from level2_cicd.names import CI
from level2_cicd.settings import get_settings

DELETED = "0" * 40


def pushed_commits(lines: list[str], branch: str) -> list[str]:
    """The new tip of the delivered branch, if this push moved it (deleting it delivers
    nothing; other branches are not delivered)."""
    commits = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == f"refs/heads/{branch}" and parts[1] != DELETED:
            commits.append(parts[1])
    return commits


def main() -> int:
    settings = get_settings()
    for sha in pushed_commits(sys.stdin.read().splitlines(), settings.branch):
        try:
            run = run_deployment(
                CI, parameters={"sha": sha}, flow_run_name=f"ci-{sha[:12]}", timeout=0
            )
        except Exception as error:  # noqa: BLE001 - the push itself has succeeded
            print(f"CI/CD NOT started for {sha[:12]}: {error}")
            print(f"start it by hand: make level2-ci SHA={sha}")
            continue
        print(f"CI/CD started for {sha[:12]}: flow run {run.name} ({run.id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
