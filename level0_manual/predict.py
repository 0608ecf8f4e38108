"""Level 0, step 6: send real HTTP requests to the running service and print its answers,
using customers from the newest landed batch (the ones the business wants scored today).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from level0_manual.service import get_settings
from shared.data import feature_files, read_batch
from shared.schema import FEATURE_NAMES, ID
from shared.validation import validate_file


def sample_records(landing: Path, n: int = 5) -> list[dict[str, Any]]:
    """The first `n` customers of the newest batch that meets the contract, as JSON records."""
    for path in reversed(feature_files(landing)):
        if validate_file(path).ok:  # a file that cannot be read is not valid either
            rows = read_batch(path)[[ID, *FEATURE_NAMES]].head(n)
            # numpy scalars to plain Python numbers and bools, ready for JSON.
            return [{k: _plain(v) for k, v in row.items()} for row in rows.to_dict("records")]
    raise FileNotFoundError(f"no valid batch in {landing}: generate data first (make data)")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def request_predictions(base_url: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """POST the records to /predict; raises with the service's reason on a non-200 answer."""
    response = httpx.post(f"{base_url}/predict", json=records, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"/predict answered {response.status_code}: {response.text}")
    return response.json()


def print_predictions(records: list[dict[str, Any]], answer: dict[str, Any]) -> None:
    print(f"model {answer['model_name']} version {answer['model_version']}:")
    print(
        f"  {'customer':<16} {'age':>4} {'orders':>6} {'late':>5} {'compl.':>6}  {'P(churn)':>8}  churn?"
    )
    for record, p in zip(records, answer["predictions"], strict=True):
        print(
            f"  {record[ID]:<16} {record['age']:>4} {record['orders_30d']:>6} "
            f"{record['late_deliveries_30d']:>5} {record['complaints_90d']:>6}  "
            f"{p['churn_probability']:>8.3f}  {'yes' if p['churn'] else 'no'}"
        )


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, default=Path("var/landing"))
    parser.add_argument("--url", default=f"http://{settings.host}:{settings.port}")
    parser.add_argument("-n", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        records = sample_records(args.landing, args.n)
        print_predictions(records, request_predictions(args.url, records))
    except (FileNotFoundError, RuntimeError, httpx.HTTPError) as error:
        sys.exit(f"prediction failed: {error} (is the service running? make level0-serve)")


if __name__ == "__main__":
    main()
