"""Level 2 by hand: what the `make level2-*` targets call.

python -m level2_cicd.run ci [SHA]      CI on a commit of the remote, through the same
python -m level2_cicd.run cd [SHA]      deployment a push starts; CD (deliver it) again.
                                        Default: the tip of the delivered branch; a short
                                        sha or a ref works with a local remote. Waits.
python -m level2_cicd.run traffic [--rate 20] [--seconds 600]
                                        live requests to production (L2_PRODUCTION_URL)
python -m level2_cicd.run fault [--error-rate 0.5] [--delay-ms 0]
                                        the canary drill: production's canary arm fails
                                        or slows down (needs L2_SERVE_API_KEY); no
                                        option clears it
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from level2_cicd.names import CD, CI, ROLLOUT_KINDS
from level2_cicd.remote import git, git_auth_env
from level2_cicd.settings import CicdSettings, get_settings

# Each command imports what it needs when it runs: `fault` and `traffic` start in a second
# without Prefect, MLflow and Evidently (CD's module imports all three).


def resolve(sha: str | None, settings: CicdSettings) -> str:
    if sha is None:
        return git("ls-remote", settings.remote, f"refs/heads/{settings.branch}").split()[0]
    if Path(settings.remote).is_dir():  # a short sha or a ref of the local remote
        return git("rev-parse", "--verify", f"{sha}^{{commit}}", cwd=Path(settings.remote))
    return sha


def run_stage(deployment: str, parameters: dict, timeout: float) -> None:
    """Start a deployment's run for a commit (the flow names it <stage>-<sha>) and wait."""
    from prefect.deployments import run_deployment

    from shared.preflight import require

    require(deployment, "level2-runner")
    print(f"started {deployment} for {parameters['sha'][:12]}; waiting for the runner ...",
          flush=True)  # fmt: skip
    flow_run = run_deployment(deployment, parameters=parameters, timeout=timeout)
    print(f"{flow_run.name}: {flow_run.state.name}: {flow_run.state.message or ''}")
    if not flow_run.state.is_completed():
        sys.exit(1)


def traffic(settings: CicdSettings, rate: float, seconds: float) -> None:
    """Send live traffic; every minute print what was answered (and forget it: this also
    runs for days as the container stack's `traffic` service)."""
    from level2_cicd.traffic import Traffic

    print(f"sending ~{rate:.0f} requests/s to {settings.production_url} for {seconds:.0f} s")
    ends = time.monotonic() + seconds
    with Traffic(settings.production_url, rate) as sent:
        while (left := ends - time.monotonic()) > 0:
            time.sleep(min(60.0, left))
            count = len(sent.answers)
            answers = sent.answers[:count]
            del sent.answers[:count]  # the sender appends on: only what was read goes
            by_status = Counter(status for status, _ in answers)
            by_version = Counter(version for _, version in answers if version)
            print(f"{count} requests; by status {dict(by_status)}; by version {dict(by_version)}")


def fault(settings: CicdSettings, error_rate: float, delay_ms: float) -> None:
    from level2_cicd.replicas import replica_urls
    from level2_cicd.service import ProductionSettings

    key = ProductionSettings().api_key
    if key is None:
        sys.exit("set L2_SERVE_API_KEY (the production service's admin key, see .env.example)")
    failed = 0
    for url in replica_urls(settings):  # each replica routes its own canary share
        answer = httpx.post(
            f"{url}/admin/fault",
            json={"error_rate": error_rate, "delay_ms": delay_ms},
            headers={"X-API-Key": key.get_secret_value()},
            timeout=10,
        )
        print(url, answer.status_code, answer.text)
        failed += answer.status_code != 200
    if failed:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for stage in ("ci", "cd"):
        command = commands.add_parser(stage, help=f"run {stage.upper()} on a commit and wait")
        command.add_argument("sha", nargs="?", help="a commit of the remote (default: its tip)")
        command.add_argument("--timeout", type=float, default=1800, help="seconds to wait")
    commands.choices["cd"].add_argument(
        "--approval", choices=["auto", "manual"], help="override L2_APPROVAL for this delivery"
    )
    commands.choices["cd"].add_argument(
        "--rollout", choices=ROLLOUT_KINDS,
        help="override the commit's Rollout: trailer and L2_ROLLOUT for this delivery",
    )  # fmt: skip
    sending = commands.add_parser("traffic", help="send live requests to production")
    sending.add_argument("--rate", type=float, default=20.0, help="requests per second")
    sending.add_argument("--seconds", type=float, default=600.0)
    drill = commands.add_parser("fault", help="make production's candidate arm fail or slow down")
    drill.add_argument("--error-rate", type=float, default=0.0)
    drill.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    settings = get_settings()
    os.environ.update(git_auth_env(settings))  # `git ls-remote` of the git server
    if args.command == "ci":
        run_stage(CI, {"sha": resolve(args.sha, settings)}, args.timeout)
    elif args.command == "cd":
        parameters = {"sha": resolve(args.sha, settings), "approval_mode": args.approval,
                      "rollout": args.rollout}  # fmt: skip
        run_stage(CD, parameters, args.timeout)
    elif args.command == "traffic":
        traffic(settings, args.rate, args.seconds)
    else:
        fault(settings, args.error_rate, args.delay_ms)


if __name__ == "__main__":
    main()
