"""Start a level-1 deployment on demand and wait for its outcome: what `make level1-train` and
`make level1-replay` call, on the laptop and in the containers alike.

    python -m level1_ct.run train [--window-days 3] [--n-iter 5]
    python -m level1_ct.run replay [--scenario covariate-shift] [--days 14] [--seconds-per-day 10]

The run goes through the Prefect server to the process serving the deployments (the runner),
exactly as a scheduled or event-triggered run does; it is just started by a person.
"""

from __future__ import annotations

import argparse
import sys

from prefect.deployments import run_deployment

from level1_ct.names import REPLAY, TRAINING, deployment
from shared.preflight import require

DEPLOYMENTS = {"train": deployment(TRAINING), "replay": deployment(REPLAY)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="retrain now (trigger reason 'manual')")
    train.add_argument("--window-days", type=int, help="train on the newest N labelled days")
    train.add_argument("--n-iter", type=int, help="hyper-parameter candidates to try")
    replay = commands.add_parser("replay", help="replay more simulated days against the stack")
    replay.add_argument("--scenario", default="covariate-shift")
    replay.add_argument("--days", type=int, default=14)
    replay.add_argument("--seconds-per-day", type=float, default=10.0)
    replay.add_argument("--rows-per-day", type=int, default=500)
    for command in (train, replay):
        command.add_argument("--timeout", type=float, default=1800, help="seconds to wait")
    args = parser.parse_args(argv)

    if args.command == "train":
        parameters = {"reason": "manual", "window_days": args.window_days, "n_iter": args.n_iter}
    else:
        parameters = {"scenario": args.scenario, "days": args.days,
                      "seconds_per_day": args.seconds_per_day, "rows_per_day": args.rows_per_day}  # fmt: skip
    parameters = {k: v for k, v in parameters.items() if v is not None}
    name = DEPLOYMENTS[args.command]
    require(name, "level1-runner", mlflow=args.command == "train")
    print(f"started {name} {parameters}; waiting for the runner to run it ...", flush=True)
    flow_run = run_deployment(name, parameters=parameters, timeout=args.timeout)
    state = flow_run.state
    print(f"{flow_run.name}: {state.name}: {state.message or ''}")
    if not state.is_completed():
        sys.exit(1)


if __name__ == "__main__":
    main()
