"""What production counts for each arm of a rollout: requests, errors, latency, the predicted
probabilities' histogram, and the customers it answered.

The champion's arm and the candidate's (the `canary` arm, whatever the rollout kind) are
counted from the moment a candidate version appears; `GET /rollout` shows the snapshots and
CD's rollout rule (level2_cicd/rollout.py) judges them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from level2_cicd.rollout import BINS, bin_of


class ArmCounter:
    """One arm's figures since the current candidate version appeared."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=5000)
        self.histogram = [0] * BINS
        # The customers whose request this arm answered (or, for a shadow, scored)
        self.customers: set[str] = set()

    def count(
        self, latency_ms: float, probabilities: np.ndarray | None, customers: Iterable[str] = ()
    ) -> None:
        """One request: answered with `probabilities` for `customers`, or failed (None)."""
        self.requests += 1
        if probabilities is None:
            self.errors += 1
            return
        self.latencies_ms.append(latency_ms)
        self.customers.update(c for c in customers if c)
        for p in probabilities:
            self.histogram[bin_of(p)] += 1

    def snapshot(self) -> dict[str, Any]:
        p50, p95 = np.percentile(self.latencies_ms, [50, 95]) if self.latencies_ms else (0, 0)
        return {"requests": self.requests, "errors": self.errors, "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2), "histogram": list(self.histogram),
                "customers": len(self.customers)}  # fmt: skip
