"""The shadow arm: the candidate scores a copy of production's requests in a process of its own.

Under a shadow rollout production answers every request with the champion. Once the answer is
on its way, the request's rows and the champion's probabilities are handed to
`ShadowArm.submit`, which only appends them to a buffer (never waits; a full buffer drops the
copy and counts it). Every `flush_seconds` a thread hands the buffer to the shadow process,
which scores it with the candidate and counts the shadow's arm itself: requests, errors, the
model call's time, the predictions' histogram, customers, and how many of the champion's
decisions it would have changed. It sends back only those figures. No customer ever receives
a shadow's answer: nothing it computes goes back to a request.

Why a process, and the idle CPU class: the model call is Python holding the GIL (see
level1_ct.service.MicroBatcher), so in a thread of the service it would run instead of the
event loop that answers the customers. In a process of its own under Linux's SCHED_IDLE
policy, the kernel runs it only on CPU time nothing else wants (where the policy is refused,
it is niced to 19): at full load the shadow falls behind and drops copies, production does
not slow down; production pays the pickle of each batch. `make bench-shadow` measures what it
costs production's p99 (measured with nice 10 instead, 2026-12-07, 2 cores, saturated: +18 %;
the shadow scored every copy, taking the CPU from production). What production's process
does for it is kept small, since any of it holds the GIL its event loop needs: one pickle of
the rows per flush, and a small dict of figures back (counting each copy in production's
process cost p99 +16 % at one flush a second, in bursts of ~5 ms).

    python -m level2_cicd.shadow   the shadow process (started by ShadowArm)
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from level2_cicd.arms import ArmCounter
from level2_cicd.rollout import disagree
from shared.schema import ID

log = logging.getLogger("level2.shadow")


@dataclass(frozen=True)
class Copy:
    """One production request, as the shadow gets it: its rows and the champion's answer."""

    rows: list[dict[str, Any]]
    champion: np.ndarray


NOTHING_YET = {**ArmCounter().snapshot(), "disagreements": 0, "problem": None}


class ShadowArm:
    """The service's side: `submit` buffers copies, a thread feeds the shadow process and
    keeps the figures it sends back. `load` starts a process for a candidate (new figures);
    `unload` ends it."""

    def __init__(self, flush_seconds: float = 0.2, max_pending: int = 10_000):
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending  # requests waiting for the shadow; more are dropped
        self._lock = threading.Lock()
        self._pending: list[Copy] = []
        self._process: subprocess.Popen | None = None
        # The candidate to shadow (None: none) and its load's number; the thread alone starts
        # and ends processes, one per load, so `load` and `unload` never wait
        self._wanted: tuple[int, Any] | None = None
        self._running: int | None = None  # the load the process scores for
        self.generation = 0
        self.figures: dict[str, Any] = dict(NOTHING_YET)  # the process's, after its last batch
        self.dropped = 0  # copies not scored: the buffer was full or the process failed
        self.outcomes: Any = None  # production's churn_arm_requests counter, for /metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fault: tuple[float, float] = (0.0, 0.0)  # (error rate, delay ms), the drill's

    # ---- the event loop's side: never waits ----------------------------------------------

    def submit(self, rows: list[dict[str, Any]], champion: np.ndarray) -> None:
        if self._wanted is None:
            return
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return
            self._pending.append(Copy(rows, champion))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.figures, "dropped": self.dropped}

    # ---- the candidate ---------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._wanted is not None

    def load(self, pipeline: Any) -> None:
        """Shadow this candidate from now on, with new figures (its process starts with the
        next flush)."""
        with self._lock:
            self.generation += 1
            self._wanted = (self.generation, pipeline)
            self._pending, self.figures, self.dropped = [], dict(NOTHING_YET), 0

    def unload(self) -> None:
        """No more copies; the process ends with the next flush."""
        with self._lock:
            self._wanted, self._pending = None, []

    # ---- the thread's side -----------------------------------------------------------------

    def flush(self) -> int:
        """Score what is buffered in the shadow process and keep its figures; returns the
        requests sent (0 when the process failed: those copies are counted as dropped)."""
        with self._lock:
            batch, self._pending, wanted = self._pending, [], self._wanted
        if wanted is None or wanted[0] != self._running:  # a new candidate, or none
            self._end_process()
            self._running = wanted[0] if wanted else None
        if wanted is None:
            return 0
        generation, pipeline = wanted
        try:
            process = self._start_process(pipeline)  # at once: it is ready for the first copy
            if not batch:
                return 0
            champion = np.concatenate([c.champion for c in batch])
            pickle.dump(([c.rows for c in batch], champion, self.fault), process.stdin,
                        pickle.HIGHEST_PROTOCOL)  # fmt: skip
            process.stdin.flush()
            figures = pickle.load(process.stdout)
        except Exception as error:  # the process died: the next flush starts a new one
            with self._lock:
                self.dropped += len(batch)
                self.figures = {**self.figures,
                                "problem": f"the shadow process stopped: {error!r}"[:300]}  # fmt: skip
            log.warning("shadow: %s", self.figures["problem"])
            self._end_process()
            self._running = None
            return 0
        with self._lock:
            if generation != self.generation:  # a new candidate came meanwhile
                return 0
            before, self.figures = self.figures, figures
        if figures["requests"] < before["requests"]:  # a new process, after one died: from 0
            before = NOTHING_YET
        if self.outcomes is not None:
            errors = figures["errors"] - before["errors"]
            self.outcomes.labels("shadow", "ok").inc(
                figures["requests"] - before["requests"] - errors
            )
            self.outcomes.labels("shadow", "error").inc(errors)
        return len(batch)

    def _start_process(self, pipeline: Any) -> subprocess.Popen:
        if self._process is None:
            # Idle from its first instruction: its start (imports, the model) is CPU too
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                preexec_fn=idle_priority,
            )  # fmt: skip
            pickle.dump(pipeline, self._process.stdin, pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()
        return self._process

    def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-arm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._end_process()


class ShadowCounts:
    """The shadow process's side: it scores each batch and counts the arm."""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline
        self.counter = ArmCounter()
        self.disagreements = 0  # records whose decision the shadow would have changed
        self.problem: str | None = None

    def batch(self, requests: list[list[dict[str, Any]]], champion: np.ndarray,
              fault: tuple[float, float]) -> dict[str, Any]:  # fmt: skip
        """Score a batch, count each request, and return the figures so far."""
        answers, model_ms = score(self.pipeline, requests, fault)
        start = 0
        for rows, answer in zip(requests, answers, strict=True):
            if isinstance(answer, str):  # the candidate failed on this request
                self.counter.count(model_ms, None)
                self.problem = answer
            else:
                self.counter.count(model_ms, answer, (str(r.get(ID) or "") for r in rows))
                mine = champion[start : start + len(rows)]
                self.disagreements += int(disagree(mine, answer).sum())
            start += len(rows)
        return {**self.counter.snapshot(), "disagreements": self.disagreements,
                "problem": self.problem}  # fmt: skip


def score(pipeline: Any, requests: list[list[dict[str, Any]]], fault: tuple[float, float]):
    """The shadow process's work on one batch: every request's rows in one model call, as
    production's micro-batcher scores them. Each request's probabilities, or why it failed
    (a string), and the call's time in ms."""
    import pandas as pd

    from shared.api import churn_probabilities
    from shared.schema import FEATURE_NAMES

    error_rate, delay_ms = fault
    started = time.perf_counter()
    if delay_ms:
        time.sleep(delay_ms / 1000)
    try:
        rows = [row for request in requests for row in request]
        frame = pd.DataFrame(rows, columns=[*FEATURE_NAMES, ID])
        probabilities = churn_probabilities(pipeline, frame)
    except Exception as error:
        failed = f"the candidate cannot score: {type(error).__name__}: {error}"[:300]
        return [failed] * len(requests), (time.perf_counter() - started) * 1000
    answers: list[np.ndarray | str] = []
    start = 0
    for request in requests:
        if random.random() < error_rate:
            answers.append("injected fault")
        else:
            answers.append(probabilities[start : start + len(request)])
        start += len(request)
    return answers, (time.perf_counter() - started) * 1000


def idle_priority() -> str:
    """Run this process only on CPU time nothing else wants: SCHED_IDLE, else nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):  # not Linux, or refused
        os.nice(19 - os.nice(0))
        return "nice 19"


def _shadow_process() -> None:
    """Batches in on stdin, the arm's figures out on stdout (pickles), until the service
    closes its input."""
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service ends it, not the terminal
    answers_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr: stdout carries only the answers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    counts = ShadowCounts(pickle.load(sys.stdin.buffer))
    threadpool_limits(1, "openmp")
    while True:
        try:
            requests, champion, fault = pickle.load(sys.stdin.buffer)
        except (EOFError, pickle.UnpicklingError):
            return
        pickle.dump(counts.batch(requests, champion, fault), answers_out, pickle.HIGHEST_PROTOCOL)
        answers_out.flush()


if __name__ == "__main__":
    _shadow_process()
