"""Run CI on a commit of the remote by hand, through the same deployment a push starts, and
wait for its verdict: what `make level2-ci` calls.

    python -m level2_cicd.run ci [SHA]     # default: the tip of the delivered branch; a short
                                           # sha or a ref works with a local remote
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect.deployments import run_deployment

from level2_cicd.hook import DEPLOYMENT
from level2_cicd.remote import git
from level2_cicd.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["ci"])
    parser.add_argument("sha", nargs="?", help="a commit of the remote (default: its tip)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.sha is None:
        sha = git("ls-remote", settings.remote, f"refs/heads/{settings.branch}").split()[0]
    elif Path(settings.remote).is_dir():  # a short sha or a ref of the local remote
        sha = git("rev-parse", "--verify", f"{args.sha}^{{commit}}", cwd=Path(settings.remote))
    else:
        sha = args.sha
    print(f"started {DEPLOYMENT} for {sha[:12]}; waiting for the runner to run it ...", flush=True)
    flow_run = run_deployment(
        DEPLOYMENT, parameters={"sha": sha}, flow_run_name=f"ci-{sha[:12]}", timeout=args.timeout
    )
    print(f"{flow_run.name}: {flow_run.state.name}: {flow_run.state.message or ''}")
    if not flow_run.state.is_completed():
        sys.exit(1)


if __name__ == "__main__":
    main()
