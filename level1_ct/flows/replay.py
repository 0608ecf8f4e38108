"""Traffic and time: replay a scenario day by day against the running stack.

Each simulated day the replay lands that day's batch in the landing folder (and the labels
of `label_delay_days` earlier, as they arrive), then sends the day's customers to the
service as prediction requests. `seconds_per_day` compresses time: with 10, four weeks
pass in under five minutes, and a learner watches the loop react in the UIs: the watcher
sees the batch, training runs, monitoring sees the young customers arrive and alerts.
"""

from __future__ import annotations

import json
import time
from datetime import date

import httpx
from prefect import flow, get_run_logger
from prefect.states import Completed

from level1_ct import names
from level1_ct.settings import get_settings
from shared import http_client
from shared.data import day_of, feature_files
from shared.schema import FEATURE_NAMES, ID
from shared.simulator import SimulationConfig, generate_day, land_day

REQUEST_RECORDS = 50  # customers per request


def next_day(landing, start: date) -> int:
    """The first simulated day not landed yet (days count from `start`)."""
    landed = feature_files(landing)
    return (day_of(landed[-1]) - start).days + 1 if landed else 0


def send_day(client: httpx.Client, url: str, features) -> tuple[int, int]:
    """POST the day's customers in requests of REQUEST_RECORDS; returns (served, failed)."""
    records = json.loads(features[[*FEATURE_NAMES, ID]].to_json(orient="records"))
    served = failed = 0
    for start in range(0, len(records), REQUEST_RECORDS):
        chunk = records[start : start + REQUEST_RECORDS]
        try:
            response = client.post(f"{url}/predict", json=chunk)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        served, failed = served + ok * len(chunk), failed + (not ok) * len(chunk)
    return served, failed


@flow(name=names.REPLAY)
def replay(
    scenario: str = "covariate-shift",
    days: int = 14,
    seconds_per_day: float = 10.0,
    rows_per_day: int = 500,
    seed: int = 42,
    label_delay_days: int = 3,
):
    """Land `days` more days of `scenario` and send each day's traffic to the service."""
    settings, logger = get_settings(), get_run_logger()
    config = SimulationConfig(
        scenario=scenario, days=days, seed=seed, rows_per_day=rows_per_day,
        label_delay_days=label_delay_days,
    )  # fmt: skip
    first = next_day(settings.landing, config.start_date)
    totals = {"served": 0, "failed": 0}
    with http_client.client(timeout=30) as client:
        for day in range(first, first + days):
            started = time.monotonic()
            written = land_day(settings.landing, config, day)
            # The day's customers as they landed: on a data-incident day the service answers
            # the broken rows with a 422, counted as failed here.
            features, _ = generate_day(config, day)
            served, failed = send_day(client, settings.service_url, features)
            totals["served"] += served
            totals["failed"] += failed
            logger.info(
                "day %d (%s): landed %s; %d predictions served, %d failed",
                day, config.day_date(day), [p.name for p in written], served, failed,
            )  # fmt: skip
            time.sleep(max(0.0, seconds_per_day - (time.monotonic() - started)))
    return Completed(
        message=f"replayed days {first}..{first + days - 1} of '{scenario}': "
        f"{totals['served']} predictions served, {totals['failed']} failed"
    )
