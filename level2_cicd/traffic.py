"""Live traffic for production: one customer per request, a steady rate, from the simulated
world (a scenario's day). A canary is judged on what production's clients send; with no
client around (the embedded mode, a test), this is the client.

    python -m level2_cicd.run traffic --rate 20 --seconds 600
"""

from __future__ import annotations

import json
import threading
from itertools import cycle

import httpx

from shared import http_client
from shared.schema import FEATURE_NAMES, ID
from shared.simulator import SimulationConfig, generate_day


def customers(scenario: str = "stable", day: int = 0) -> list[dict]:
    features, _ = generate_day(SimulationConfig(scenario=scenario), day)
    clean = features.dropna(subset=list(FEATURE_NAMES))
    return json.loads(clean[[*FEATURE_NAMES, ID]].to_json(orient="records"))


class Traffic:
    """Sends requests to `url` at about `rate` per second until stopped; keeps every answer
    as (HTTP status or error name, model version that answered)."""

    def __init__(self, url: str, rate: float = 20.0, scenario: str = "stable"):
        self.url, self.pause = url, 1.0 / rate
        self.records = customers(scenario)
        self.answers: list[tuple[int | str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        with http_client.client(self.url, timeout=10) as client:
            for record in cycle(self.records):
                if self._stop.wait(self.pause):
                    return
                try:
                    answer = client.post("/predict", json=record)
                    version = answer.json().get("model_version", "") if answer.is_success else ""
                    self.answers.append((answer.status_code, version))
                except httpx.HTTPError as error:
                    self.answers.append((type(error).__name__, ""))

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
