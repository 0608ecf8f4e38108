"""What `make compare` replays, from COMPARE_* environment variables or `--flags`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

Settings = TypeVar("Settings", bound=BaseSettings)


def level_defaults(settings_class: type[Settings]) -> Settings:
    """A level's settings at their defaults, whatever the environment says: the replay is
    the same for a seed even in a shell that exports `L1_*`/`L2_*` variables for a stack
    (the levels read theirs from the environment, as their services must)."""

    class Defaults(settings_class):  # type: ignore[misc, valid-type]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            **_: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:  # fmt: skip
            return (init_settings,)  # no environment, no .env file

    Defaults.__name__ = Defaults.__qualname__ = settings_class.__name__
    return Defaults()


class CompareSettings(BaseSettings):
    # A day that is None skips its event: COMPARE_INCIDENT_DAY=none, or --incident_day none
    model_config = SettingsConfigDict(env_prefix="COMPARE_", frozen=True, env_parse_none_str="none")

    # The story: 60 days; the levels take over on `start_day` with one model trained by
    # hand on the labelled days before it; then the user base gets younger, an export
    # breaks, and what drives churn changes.
    days: int = Field(60, ge=20)
    seed: int = 42
    rows_per_day: int = Field(500, ge=200)
    label_delay_days: int = Field(3, ge=1)
    start_day: int = Field(14, ge=7)
    covariate_shift_day: int | None = 20
    covariate_shift_days: int = 14
    incident_day: int | None = 35
    incident: str = "nulls"
    concept_drift_day: int | None = 45
    concept_drift_days: int = 7

    # The code changes a developer pushes (None: no such change)
    good_change_day: int | None = 16
    bad_change_day: int | None = 26
    # Level 2's rollout kinds replayed side by side (compare/rollouts.py), with a bad change
    # CI cannot see and then the good change pushed on these days; [] skips them. As a
    # flag: --rollout_kinds ab --rollout_kinds shadow; as a variable:
    # COMPARE_ROLLOUT_KINDS='["shadow"]'
    rollout_kinds: list[Literal["canary", "shadow", "ab"]] = ["canary", "shadow", "ab"]
    rollout_bad_day: int | None = 16
    rollout_good_day: int | None = 26
    # The group-harm story (compare/group_harm.py): a world of its own, replayed for
    # `group_harm_days` days from `start_day`, where a change that harms rural customers
    # is pushed on `group_harm_day` (None skips the story)
    group_harm_day: int | None = 16
    group_harm_days: int = Field(21, ge=7)

    # People: a change is released by hand `manual_release_days` after its push (levels 0
    # and 1); a person acts `response_days` after an alert (alerts come in the evening: the
    # next day at the earliest), or `notice_days` after a bad
    # release when nothing alerts (level 0, no monitoring); level 0's person retrains by
    # hand every `level0_retrain_weeks` weeks (0: never, the level-0 default).
    manual_release_days: int = Field(3, ge=0)
    response_days: int = Field(1, ge=1)
    notice_days: int = Field(7, ge=1)
    level0_retrain_weeks: int = Field(0, ge=0)

    # Training in the replay: a small search, so 60 days of daily retraining fit in minutes
    n_iter: int = Field(2, ge=1)
    cv_folds: int = Field(2, ge=2)
    jobs: int = -1  # processes for a search's fits (-1: one per core); the same models

    # Summary: recovered = the 3-day mean live ROC AUC back within `recovery_tolerance` of
    # its mean before any drift; a level with continuous training should get there within
    # `recovery_window_days` of the concept drift's start (what the tests hold level 1 to)
    recovery_tolerance: float = 0.03
    recovery_window_days: int = 12

    # Where the report goes. Who answers the customers: function calls ("embedded"), or each
    # level's real service in its container stack ("docker": `make compare STACK=docker`)
    out: Path = Path("var/compare")
    stack: Literal["embedded", "docker"] = "embedded"
    # The stacks' compose projects are `<stack_project>-level0`..`2` (tests give their own)
    stack_project: str = Field("compare", pattern=r"^[a-z0-9][a-z0-9_-]*$")

    @model_validator(mode="after")
    def _days_in_range(self) -> CompareSettings:
        kinds = ("rollout_bad_day", "rollout_good_day") if self.rollout_kinds else ()
        for name in ("start_day", "covariate_shift_day", "incident_day", "concept_drift_day",
                     "good_change_day", "bad_change_day", *kinds):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.days:
                raise ValueError(f"{name}={value} is outside the replay's days 0..{self.days - 1}")
        harm_days = range(self.start_day, self.start_day + self.group_harm_days)
        if self.group_harm_day is not None and self.group_harm_day not in harm_days:
            raise ValueError(f"group_harm_day={self.group_harm_day} is outside the group-harm "
                             f"story's days {harm_days.start}..{harm_days.stop - 1}")  # fmt: skip
        if self.start_day <= self.label_delay_days + 2:
            raise ValueError(
                "start_day must leave at least 3 labelled days to train the first model"
            )
        return self
