"""The prediction store: every prediction the service made, the labels that arrived later,
and the monitoring results over time. Postgres in the containers, SQLite in the embedded mode
(any SQLAlchemy URL).

The service never waits for the database: `PredictionLog.record` appends to an in-memory
buffer, and every `flush_seconds` the buffer goes to a writer process that inserts it in one
batch. If the database is down, rows stay in the writer's buffer (up to `max_buffer`, then
the oldest are dropped and counted) and are written when it is back.

Why a process and not a thread: inserting a row is about 20 us of Python, and a thread doing
that holds the GIL the service's event loop needs. At 16 connections on 2 cores the writes
in a thread cost the service 15-20 % of its throughput and several ms of p99; in a process
of their own they cost a pickle of each batch.

    python -m level1_ct.prediction_log   the writer process (started by PredictionLog)
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.data import day_of, label_files, read_batch
from shared.schema import DATE, FEATURES, ID, LABEL, LABEL_COLUMNS
from shared.utc import as_utc
from shared.validation import validate_file

log = logging.getLogger(__name__)

_SQL_TYPES = {"int": sa.Integer, "float": sa.Float, "bool": sa.Boolean, "category": sa.String(32)}

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column(ID, sa.String(64), index=True),
    sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False, index=True),
    *(sa.Column(c.name, _SQL_TYPES[c.kind]) for c in FEATURES),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("churn", sa.Boolean, nullable=False),
)
labels = sa.Table(
    "labels",
    metadata,
    sa.Column(ID, sa.String(64), primary_key=True),
    sa.Column(DATE, sa.Date, nullable=False, index=True),
    sa.Column(LABEL, sa.Boolean, nullable=False),
)
monitoring = sa.Table(
    "monitoring",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
)


def connect(url: str) -> Engine:
    """An engine for the store, with its tables created if they are not there yet."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine


class _Batches:
    """A bounded buffer of rows: when full, the oldest rows go first and are counted."""

    def __init__(self, max_rows: int):
        self.rows: deque[dict[str, Any]] = deque(maxlen=max_rows)
        self.dropped = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.dropped += max(0, len(self.rows) + len(rows) - (self.rows.maxlen or 0))
        self.rows.extend(rows)

    def put_back(self, rows: list[dict[str, Any]]) -> None:
        """Return rows that could not be written, ahead of newer ones, as far as room allows."""
        room = (self.rows.maxlen or len(rows)) - len(self.rows)
        kept = rows[len(rows) - room :] if room < len(rows) else rows
        self.dropped += len(rows) - len(kept)
        self.rows.extendleft(reversed(kept))

    def take(self) -> list[dict[str, Any]]:
        rows = list(self.rows)
        self.rows.clear()
        return rows


_NO_STATUS = {"pending": 0, "dropped": 0, "written": 0, "last_error": None}


class StoreWriter:
    """Writes buffered rows to the store in one transaction; keeps them while it is down.
    The writer process runs one (see the module docstring)."""

    def __init__(self, url: str, max_buffer: int):
        self.url = url
        self.buffer = _Batches(max_buffer)
        self._engine: Engine | None = None
        self.written = 0
        self.last_error: str | None = None

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.buffer.add(rows)
        batch = self.buffer.take()
        if not batch:
            return
        try:
            if self._engine is None:
                self._engine = connect(self.url)
            with self._engine.begin() as conn:
                conn.execute(predictions.insert(), batch)
        except Exception as error:  # the store is down: keep the rows for the next try
            self.buffer.put_back(batch)
            self.last_error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            log.warning("prediction log: %d rows kept for later: %s", len(batch), self.last_error)
            return
        self.written += len(batch)
        self.last_error = None

    def status(self) -> dict[str, Any]:
        return {"pending": len(self.buffer.rows), "dropped": self.buffer.dropped,
                "written": self.written, "last_error": self.last_error}  # fmt: skip


class PredictionLog:
    """The service's side of the prediction log (see the module docstring): `record` buffers,
    a thread hands the buffer to the writer process every `flush_seconds`. `pending`,
    `dropped` and `last_error` describe both sides, for /health."""

    def __init__(self, url: str, flush_seconds: float = 1.0, max_buffer: int = 100_000):
        self.url = url
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self._buffer = _Batches(max_buffer)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: subprocess.Popen | None = None
        self._status = dict(_NO_STATUS)  # what the writer process said after its last write
        self._lost = 0  # rows lost with writer processes that died
        self._writer_error: str | None = None
        self.written = 0  # rows in the store, over every writer process

    def record(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows for the next batch write; never blocks on the database."""
        with self._lock:
            self._buffer.add(rows)

    @property
    def pending(self) -> int:
        return len(self._buffer.rows) + self._status["pending"]

    @property
    def dropped(self) -> int:
        return self._buffer.dropped + self._lost + self._status["dropped"]

    @property
    def last_error(self) -> str | None:
        return self._writer_error or self._status["last_error"]

    def flush(self) -> int:
        """Hand everything buffered to the writer and wait for its write; returns the rows
        written by it (0 if the store is down: they wait in the writer)."""
        with self._lock:
            batch = self._buffer.take()
        if not batch and not self._status["pending"]:
            return 0
        try:
            writer = self._start_writer()
            before = self._status["written"]
            pickle.dump(batch, writer.stdin, pickle.HIGHEST_PROTOCOL)
            writer.stdin.flush()
            status = pickle.load(writer.stdout)
        except Exception as error:
            # The writer died (or its pipe broke): what it held is lost; the next flush
            # starts a new one.
            self._lost += len(batch) + self._status["pending"] + self._status["dropped"]
            self._status = dict(_NO_STATUS)
            self._writer_error = f"the prediction writer process stopped: {error!r}"[:300]
            log.warning(self._writer_error)
            self._stop_writer()
            return 0
        self._writer_error = None
        self._status = status
        self.written += status["written"] - before
        return status["written"] - before

    def _start_writer(self) -> subprocess.Popen:
        if self._writer is None:
            self._writer = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            # Its settings go through the pipe: the store URL holds a password (not in `ps`)
            pickle.dump((self.url, self.max_buffer), self._writer.stdin)
            self._writer.stdin.flush()
        return self._writer

    def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.kill()
            self._writer.wait()
            self._writer = None

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def start(self) -> None:
        self._start_writer()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the flushes, write what is left, and end the writer process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # its write hangs on the store: give the rest up
                if (writer := self._writer) is not None:
                    writer.kill()
                return
        self.flush()
        if self._writer is not None:
            self._writer.stdin.close()  # the writer's end of input: it exits
            try:
                self._writer.wait(timeout=10)
                self._writer = None
            except subprocess.TimeoutExpired:
                self._stop_writer()


def _writer_process() -> None:
    """The writer process: batches in on stdin, its status out after each write (pickles)."""
    # The service ends it by closing its input, after a last flush: a Ctrl+C or SIGTERM to
    # the service's process group must not end it first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    status_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr: stdout carries only the status
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    url, max_buffer = pickle.load(sys.stdin.buffer)
    writer = StoreWriter(url, max_buffer)
    while True:
        try:
            batch = pickle.load(sys.stdin.buffer)
        except (EOFError, pickle.UnpicklingError):  # the service closed its end: it stopped
            return
        writer.write(batch)
        pickle.dump(writer.status(), status_out, pickle.HIGHEST_PROTOCOL)
        status_out.flush()


@dataclass(frozen=True)
class LabelsLoaded:
    """What `load_labels` did: rows added, and the label files it left out, with why."""

    added: int
    skipped: dict[str, str]


def load_labels(engine: Engine, landing: Path) -> LabelsLoaded:
    """Copy label files that landed since the last call into the store.

    A file that breaks the label contract (or cannot be read at all) is left out, and tried
    again next time: the training pipeline quarantines it, or a person replaces it.
    """
    with engine.connect() as conn:
        known = {row[0] for row in conn.execute(sa.select(labels.c[DATE]).distinct())}
    added, skipped = 0, {}
    for path in label_files(landing):  # a misnamed file is not listed: training quarantines it
        if day_of(path) in known:
            continue
        checked = validate_file(path, columns=LABEL_COLUMNS, row_rules=())
        if not checked.ok:
            skipped[path.name] = checked.summary()
            continue
        frame = read_batch(path, columns=[ID, DATE, LABEL])
        rows = [
            {ID: str(r[ID]), DATE: pd.Timestamp(r[DATE]).date(), LABEL: bool(r[LABEL])}
            for r in frame.to_dict("records")
        ]
        with engine.begin() as conn:
            conn.execute(labels.insert(), rows)
        added += len(rows)
    return LabelsLoaded(added, skipped)


def recent_predictions(
    engine: Engine, model_version: str | None, limit: int, labelled: bool = False
) -> pd.DataFrame:
    """The newest `limit` predictions of one model version (None: of any version), with
    their label where it has arrived (column `churned`, null until then), oldest first.
    `labelled`: only predictions whose label has arrived."""
    query = sa.select(predictions, labels.c[LABEL]).join(
        labels, predictions.c[ID] == labels.c[ID], isouter=not labelled
    )
    if model_version is not None:
        query = query.where(predictions.c.model_version == model_version)
    with engine.connect() as conn:
        frame = pd.read_sql(query.order_by(predictions.c.id.desc()).limit(limit), conn)
    return frame.iloc[::-1].reset_index(drop=True)


def decision_outcomes(
    engine: Engine, since: datetime, version: str, others: bool = False
) -> tuple[int, int]:
    """Of one version's decisions (churn or not) since `since` (`others`: of every other
    version's), how many have their label, and how many of those the label confirmed:
    (labelled, correct). A customer answered twice counts twice, as two decisions."""
    matches = predictions.c.model_version != version if others else (
        predictions.c.model_version == version
    )  # fmt: skip
    confirmed = sa.case((predictions.c.churn == labels.c[LABEL], 1), else_=0)
    query = (
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(confirmed), 0))
        .select_from(predictions.join(labels, predictions.c[ID] == labels.c[ID]))
        .where(matches, predictions.c.predicted_at >= since)
    )
    with engine.connect() as conn:
        labelled, correct = conn.execute(query).one()
    return int(labelled), int(correct)


def newest_check(
    engine: Engine, model_version: str, having: str = ""
) -> tuple[dict[str, float], datetime | None]:
    """Monitoring's newest check of one version: its figures and when it was made (None: no
    check yet). `having`: the newest check that recorded a figure whose name starts with it,
    and only those figures."""
    of_version = monitoring.c.model_version == model_version
    if having:
        of_version = sa.and_(of_version, monitoring.c.metric.startswith(having, autoescape=True))
    newest = sa.select(sa.func.max(monitoring.c.checked_at)).where(of_version)
    with engine.connect() as conn:
        when = conn.execute(newest).scalar()
        if when is None:
            return {}, None
        query = sa.select(monitoring.c.metric, monitoring.c.value).where(
            of_version, monitoring.c.checked_at == when
        )
        figures = {metric: value for metric, value in conn.execute(query).all()}
    return figures, as_utc(when)


def record_monitoring(engine: Engine, model_version: str, metrics: dict[str, float]) -> None:
    """Store one monitoring check's numbers, to plot over time."""
    now = datetime.now(UTC)
    rows = [
        {"checked_at": now, "model_version": model_version, "metric": k, "value": float(v)}
        for k, v in metrics.items()
    ]
    with engine.begin() as conn:
        conn.execute(monitoring.insert(), rows)


if __name__ == "__main__":
    _writer_process()
