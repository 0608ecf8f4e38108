"""The replayed world: each day's batch as it lands, the requests it brings, its labels.

Every level sees the same days. A day's customers send one request each to the level's
service; the rows that break the request contract (a broken export) get a 422 there, as
they would from the real API (`shared/api.py`), and are counted as failed requests.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np
import pandas as pd
from pydantic import ValidationError

from compare.settings import CompareSettings
from shared.api import Record
from shared.scenarios import Ramp, Scenario, get_scenario
from shared.schema import DATE, ID, LABEL
from shared.simulator import SimulationConfig, generate_day
from shared.validation import ValidationResult, validate


def scenario_of(settings: CompareSettings) -> Scenario:
    """The "compare" scenario with the days the settings give (the defaults are its own)."""

    def ramp(day: int | None, days: int) -> Ramp | None:
        return None if day is None else Ramp(start=day, days=days)

    base = get_scenario("compare")
    return Scenario(
        name=base.name,
        description=story(settings),
        covariate_shift=ramp(settings.covariate_shift_day, settings.covariate_shift_days),
        concept_drift=ramp(settings.concept_drift_day, settings.concept_drift_days),
        incidents={}
        if settings.incident_day is None
        else {settings.incident_day: settings.incident},
        drifted=base.drifted,
    )


def story(settings: CompareSettings) -> str:
    """The replayed story in words, with the days the settings give."""
    parts = [f"{settings.days} days"]
    if settings.covariate_shift_day is not None:
        parts.append(
            f"from day {settings.covariate_shift_day} the user base gets younger "
            f"(over {settings.covariate_shift_days} days)"
        )
    if settings.incident_day is not None:
        parts.append(f"on day {settings.incident_day} the export breaks ({settings.incident})")
    if settings.concept_drift_day is not None:
        parts.append(
            f"from day {settings.concept_drift_day}, over {settings.concept_drift_days} days, "
            "discount users, the most loyal customers, turn into deal-seekers who leave"
        )
    return "; ".join(parts) + "."


def _answerable(features: pd.DataFrame) -> np.ndarray:
    """Which rows the API would answer: those that meet the request contract."""
    columns = [c for c in features.columns if c not in (ID, DATE)]
    ok = np.zeros(len(features), dtype=bool)
    for i, row in enumerate(features[columns].to_dict("records")):
        try:
            Record.model_validate({k: (None if pd.isna(v) else v) for k, v in row.items()})
            ok[i] = True
        except (ValidationError, TypeError, ValueError):
            pass
    return ok


class World:
    """The simulated days, generated once and shared by the three levels: the story of the
    settings, or another `scenario` (the group-harm story's world) over the settings' days."""

    def __init__(self, settings: CompareSettings, scenario: Scenario | None = None):
        self.settings = settings
        self.scenario = scenario or scenario_of(settings)
        self.config = SimulationConfig(
            scenario=self.scenario.name,
            days=settings.days,
            seed=settings.seed,
            rows_per_day=settings.rows_per_day,
            label_delay_days=settings.label_delay_days,
        )
        self._days: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}
        self._answerable: dict[int, np.ndarray] = {}
        self._valid: dict[int, ValidationResult] = {}

    def _generated(self, day: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        if day not in self._days:
            self._days[day] = generate_day(self.config, day, self.scenario)
        return self._days[day]

    def features(self, day: int) -> pd.DataFrame:
        """Day `day`'s batch as it landed (broken, on an incident day)."""
        return self._generated(day)[0]

    def labels(self, day: int) -> pd.DataFrame:
        return self._generated(day)[1]

    def labelled(self, day: int) -> pd.DataFrame:
        """Day `day`'s batch joined with its labels (once they have landed)."""
        features, labels = self._generated(day)
        frame = features.merge(labels, on=[ID, DATE], how="inner", validate="1:1")
        return frame.assign(**{LABEL: frame[LABEL].astype(int)})

    def labels_landed(self, today: int) -> list[int]:
        """The days whose labels have landed by the end of `today`."""
        return list(range(0, today - self.settings.label_delay_days + 1))

    def validation(self, day: int) -> ValidationResult:
        """Day `day`'s batch against the data contract (shared/validation.py)."""
        if day not in self._valid:
            self._valid[day] = validate(self.features(day))
        return self._valid[day]

    def batch_ok(self, day: int) -> bool:
        return self.validation(day).ok

    def violations(self, day: int) -> str:
        return self.validation(day).summary()

    def answerable(self, day: int) -> np.ndarray:
        """Which of the day's requests the API answers (the others get a 422)."""
        if day not in self._answerable:
            self._answerable[day] = _answerable(self.features(day))
        return self._answerable[day]

    def answered(self, day: int) -> pd.DataFrame:
        """Day `day`'s requests the API answered, in the order of the answers."""
        return self.features(day)[self.answerable(day)]

    def evening(self, day: int) -> datetime:
        """When the levels' evening steps (monitoring) run on day `day`: 18:00 UTC."""
        return datetime.combine(self.config.day_date(day), time(18), tzinfo=UTC)

    @property
    def replay_days(self) -> range:
        return range(self.settings.start_day, self.settings.days)
