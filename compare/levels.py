"""The three levels' processes, side by side: what each does with a day, and with a change.

Every level starts the replay serving the same model, trained by hand on the days before
`start_day`, and gets the same days and the same two pushes. After each day:

- **Level 0** (manual): nobody retrains. A pushed change is released by hand days later:
  the person retrains with the new code on every labelled batch (the script refuses while
  one breaks the contract: the person removes it and trains again) and hands the file over
  if it beats the baseline. A week after a release the person looks at how the model did
  since (labels have arrived) and reverts the release if quality collapsed. No monitoring.
- **Level 1** (continuous training): level 1's pipeline runs on every landed batch: the
  data contract (a bad batch is quarantined and the run stops), training on the window,
  the model gate, promotion. Monitoring checks the champion's drift and the service's
  live quality against level 1's thresholds and triggers retraining. Code is still
  released by hand, untested; a person is paged when a live-quality alert starts and
  reverts the newest release if quality collapsed since it.
- **Level 2** (CI/CD): level 1's loop, and every push goes through CI (model, serving
  contract and consistency checks), the staging run through the gate, and a canary on
  level 2's share of live traffic, judged by level 2's rollout rule once it has answered
  enough requests (a push waits while a canary runs). No manual step.

The decisions are made by the levels' own code: level 0's steps and rules for bad batches and
the baseline (`level0_manual.train`), `shared.validation` and `shared.train`, level 1's training
rules (`level1_ct.training_rules`: the window, the data contract, the gate with level 1's
`PipelineSettings`), level 1's monitoring decision (`level1_ct.assessment`: drift, live
quality, alerts, cooldown), level 2's canary share and `rollout.decide`, level 2's CI checks
(`shared.expectations`). A parity test
(tests/integration/test_replay_parity.py) runs level 1's training and monitoring flows on the
replay's batches, champion and answers, and they decide what the replay decided. What the replay
simulates is time and the servers around them: a day is a step, and the registry, the
Prefect runs and the HTTP calls are function calls (the demos and stacks run them for real).
The services that answer the customers are `compare.servers`: function calls by default, or
each level's real service in its container stack (`make compare STACK=docker`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from compare import routing
from compare.changes import Change, Code
from compare.served import Fitted, Model
from compare.servers import Servers
from compare.settings import CompareSettings, level_defaults
from compare.world import World
from level0_manual import train as level0
from level0_manual.train import TrainSettings
from level1_ct import assessment, reports, training_rules
from level1_ct.assessment import Assessment
from level1_ct.settings import PipelineSettings
from level2_cicd.rollout import (
    ArmStats,
    Decision,
    Labelled,
    bin_counts,
    decide,
    decide_ab,
    decide_shadow,
    disagree,
)
from level2_cicd.settings import CicdSettings
from shared import expectations
from shared.evaluate import THRESHOLD, classification_metrics, evaluate
from shared.explain import Explainer, global_attributions
from shared.gate import ChampionLineage, Verdict
from shared.lineage import fingerprint
from shared.schema import FEATURE_NAMES, ID, LABEL, example_record
from shared.train import split_holdout, train

# The levels' rules at their defaults (not from the environment: see level_defaults)
PIPELINE = level_defaults(PipelineSettings)  # level 1's window, gate, monitoring thresholds
LEVEL0_MIN_AUC_LIFT = level_defaults(TrainSettings).min_auc_lift  # level 0's bar over the baseline
CICD = level_defaults(CicdSettings)  # level 2's canary bounds
# The canary's window. The service's is a time (rollout_window_seconds); a replayed day is
# a step, so the window lasts until the canary has level 2's minimum of requests, at most:
CANARY_MAX_DAYS = 3
MANUAL_REVERT_DROP = 0.10  # a person reverts a release after a live ROC AUC drop this large
# The alert rules of the levels' stacks (level1_ct/prometheus/rules.yml and level2_cicd's)
# that fire on the replay's decisions: monitoring's alerts by kind, and the others by name.
# Level 0 has no Prometheus and raises none.
ALERT_OF = {
    assessment.DRIFT: "DriftHigh",
    assessment.LIVE_QUALITY: "LiveQualityDrop",
    assessment.LIVE_FAIRNESS: "LiveFairnessGapHigh",
    assessment.ATTRIBUTION_SHIFT: "AttributionShiftHigh",
}


# Answers picked from what a service answered: (day, positions among that day's answers)
Picked = list[tuple[int, np.ndarray]]


@dataclass(frozen=True)
class Event:
    day: int
    kind: str  # train, promote, release, handoff, revert, batch-rejected, alert, ci, gate, canary
    text: str
    manual: bool = False  # a step a person took


@dataclass
class Served:
    """One level's service on one day: who was answered, with what, by which arm."""

    day: int
    version: int
    requests: int
    failed: int  # requests refused (422) by the contract
    ids: np.ndarray
    probability: np.ndarray
    canary: np.ndarray  # True where the candidate answered (a canary, or an A/B test's)
    model_code: str  # the code that trained the champion
    serving_code: str  # the code the service runs
    bad_changes: tuple[str, ...]  # the replay's ground truth: bad changes serving today
    shadow: np.ndarray | None = None  # a shadow's probabilities for the same customers


class Runs:
    """Training runs and drift checks of the shared code, shared by the levels: the same
    code on the same days gives the same model (fixed seed), and the same model's drift on
    the same day is the same, so each is computed once per replay."""

    def __init__(self, world: World, settings: CompareSettings):
        self.world, self.settings = world, settings
        self._fitted: dict[tuple, Fitted] = {}
        self._drift: dict[tuple, reports.DriftResult] = {}
        self._explainers: dict[int, Explainer] = {}
        self._attributions: dict[tuple, dict[str, float]] = {}

    def fit(self, code: Code, days: list[int]) -> Fitted:
        key = (code.n_iter, code.class_weight, code.dropped, tuple(days))
        if key not in self._fitted:
            frame = pd.concat([self.world.labelled(d) for d in days], ignore_index=True)
            train_frame, holdout = split_holdout(frame, PIPELINE.holdout_fraction)
            result = train(train_frame, code.training(self.settings))
            self._fitted[key] = Fitted(result.pipeline, tuple(days), train_frame, holdout)
        return self._fitted[key]

    def answers_frame(self, answers: Picked) -> pd.DataFrame:
        """The requests behind these answers, as the prediction store holds their features."""
        return pd.concat([self.world.answered(d).iloc[rows] for d, rows in answers])

    def drift(self, model: Model, answers: Picked) -> reports.DriftResult:
        """Level 1's drift report of answered requests against the model's reference rows
        (the sample of its training rows the pipeline logs with it)."""
        key = (id(model.fitted), tuple((day, rows.tobytes()) for day, rows in answers))
        if key not in self._drift:
            live = self.answers_frame(answers)
            reference = training_rules.reference(model.fitted.train_frame, PIPELINE)
            self._drift[key] = reports.data_drift(
                live, reference, PIPELINE.drift_share_threshold, summary=False
            )
        return self._drift[key]

    def attributions(self, model: Model, answers: Picked) -> tuple[dict, dict]:
        """What the model leaned on for its hold-out (the pipeline logs it with the version)
        and for these answers: mean |SHAP attribution| per feature, each computed once."""
        fitted = model.fitted
        if id(fitted) not in self._explainers:
            self._explainers[id(fitted)] = Explainer(fitted.pipeline)
        explainer = self._explainers[id(fitted)]
        reference_key = (id(fitted), "hold-out")
        if reference_key not in self._attributions:
            self._attributions[reference_key] = global_attributions(explainer, fitted.holdout)
        key = (id(fitted), tuple((day, rows.tobytes()) for day, rows in answers))
        if key not in self._attributions:
            self._attributions[key] = global_attributions(explainer, self.answers_frame(answers))
        return self._attributions[reference_key], self._attributions[key]

    def judge(self, candidate: Fitted, code: Code, champion: Model | None) -> Verdict:
        """Level 1's gate: candidate, baseline and champion on the candidate's hold-out, and
        the candidate's lineage (its days, its code) against the champion's."""
        evaluated = training_rules.evaluations(
            candidate.pipeline, candidate.train_frame, candidate.holdout,
            champion.pipeline if champion is not None else None,
        )  # fmt: skip
        return training_rules.gate(
            evaluated,
            PIPELINE,
            self.lineage(candidate, code),
            ChampionLineage(str(champion.version), self.lineage(champion.fitted, champion.code))
            if champion is not None
            else None,
        )

    def lineage(self, fitted: Fitted, code: Code) -> str | None:
        """The lineage fingerprint of a replayed training run: its days stand for the data
        version, the code's name for the commit, its search and seed for the params."""
        params = {"n_iter": code.n_iter, "seed": self.settings.seed}
        return fingerprint(f"days {list(fitted.days)}", code.name, params)


def first_model(world: World, runs: Runs, code: Code) -> Model:
    """The model every level starts with: trained by hand on the labelled days before the
    replay, and handed over (level 0's way; the other levels registered it as champion)."""
    days = [d for d in world.labels_landed(world.settings.start_day - 1) if world.batch_ok(d)]
    fitted = runs.fit(code, training_rules.window(days, PIPELINE.window_days))
    return _model(1, code, fitted, world.settings.start_day - 1)


def _model(version: int, code: Code, fitted: Fitted, trained: int) -> Model:
    auc = evaluate(fitted.pipeline, fitted.holdout).overall["roc_auc"]
    return Model(version, code, fitted, auc, trained)


class Level:
    """What every level has: a champion and the code serving it, a history, a record."""

    number: int
    title: str
    monitored = False

    def __init__(self, world: World, runs: Runs, initial: Model, servers: Servers):
        self.world, self.runs, self.settings = world, runs, world.settings
        self.champion, self.code = initial, initial.code
        self.versions = initial.version  # versions published to the service so far
        self.servers = servers
        servers.start(self.number, initial, self.code)
        self.served: dict[int, Served] = {}
        self.events: list[Event] = []
        self.drift: dict[int, float] = {}  # monitoring's drift share by day
        self.shift: dict[int, float] = {}  # and its attribution shift
        # The newest release not reverted, which a person suspects when quality drops:
        # (day released, change, code before it)
        self.suspect: tuple[int, Change, Code] | None = None
        self.bad_changes_serving: set[str] = set()
        # The replay's ground truth: customers who got an answer of a bad change's code
        self.bad_exposed: set[str] = set()
        self.trained: list[Fitted] = []  # every training run this level made
        self.rejected_days: set[int] = set()  # batches refused by the data contract
        self.due: list[tuple[int, Change]] = []  # (day, change): releases waiting for a person
        # The alert rules firing each evening, with what they fire about (the champion's
        # version, or the day for a quarantined batch): `compare.alerts` counts the starts
        self.firing: dict[int, set[tuple[str, int]]] = {}

    # ---- serving ------------------------------------------------------------------------

    def serve(self, day: int, canary: Model | None = None) -> Served:
        """The day's customers, one request each, to this level's service (level 2 passes
        its `canary`: the answers with the canary's version are the canary arm's)."""
        answers = self.servers.answer(self.number, day)
        on_canary = answers.version == (canary.version if canary else -1)
        wrong = set(answers.version[~on_canary].tolist()) - {self.champion.version}
        if wrong:
            raise RuntimeError(
                f"level {self.number}'s service answered with version(s) {sorted(wrong)} on day "
                f"{day}; its champion is v{self.champion.version}"
            )
        served = Served(
            day, self.champion.version, answers.requests, answers.failed, answers.ids,
            answers.probability, on_canary, self.champion.code.name, self.code.name,
            tuple(sorted(self.bad_changes_serving)), answers.shadow,
        )  # fmt: skip
        self.served[day] = served
        if self.bad_changes_serving:
            self.bad_exposed.update(answers.ids[~on_canary].tolist())
        return served

    def newest(self, days: list[int], rows: int, keep=lambda served: slice(None)) -> Picked:
        """The newest `rows` answers of `days` (those `keep` selects in a day), oldest first:
        what level 1's monitoring reads from the prediction store."""
        picked: Picked = []
        for day in sorted(days, reverse=True):
            positions = np.arange(len(self.served[day].ids))[keep(self.served[day])]
            positions = positions[max(0, len(positions) - rows) :]
            picked.append((day, positions))
            rows -= len(positions)
            if rows <= 0:
                break
        return picked[::-1]

    def quality(self, answers: Picked) -> dict[str, float]:
        """ROC AUC and F1 of these answers, against their labels; {} for none."""
        y, p = [], []
        for day, rows in answers:
            served = self.served[day]
            labels = self.world.labels(day).set_index(ID)[LABEL]
            y.append(labels.loc[served.ids[rows]].to_numpy().astype(int))
            p.append(served.probability[rows])
        if not y or not sum(map(len, y)):
            return {}
        return classification_metrics(np.concatenate(y), np.concatenate(p))

    def live_auc(self, days: list[int]) -> float:
        """ROC AUC of everything this level answered on `days` (whose labels have landed)."""
        answers = [(d, np.arange(len(self.served[d].ids))) for d in days if d in self.served]
        return self.quality(answers).get("roc_auc", math.nan)

    # ---- the process --------------------------------------------------------------------

    def record(self, day: int, kind: str, text: str, manual: bool = False) -> None:
        self.events.append(Event(day, kind, text, manual))

    def push(self, change: Change, day: int) -> None:
        """A developer pushed `change` on `day`: without CI/CD, a person releases it by hand
        `manual_release_days` later, untested."""
        self.due.append((day + self.settings.manual_release_days, change))

    def releases_due(self, day: int) -> list[Change]:
        due = [change for when, change in self.due if when == day]
        self.due = [(when, change) for when, change in self.due if when != day]
        return due

    def end_of_day(self, day: int) -> None:
        raise NotImplementedError

    def release(self, day: int, change: Change, manual: bool) -> None:
        """The change's code serves from tomorrow."""
        self.suspect = (day, change, self.code)
        self.code = change.apply(self.code)
        self.servers.release(self.number, self.code)
        if change.bad:
            self.bad_changes_serving.add(change.title)
        self.record(day, "release", f"released '{change.title}' ({self.code.name})", manual)

    def revert_if_broken(self, day: int, reason: str) -> None:
        """A person compares live quality since the newest release (not reverted yet) with
        the week before it, and reverts it when quality collapsed. A manual step either way."""
        if self.suspect is None:
            self.record(day, "check", f"{reason}: no release to suspect", manual=True)
            return
        released, change, before = self.suspect
        labelled = set(self.world.labels_landed(day))
        after = [d for d in range(released + 1, day + 1) if d in labelled]
        prior = [d for d in range(released - 6, released + 1) if d in labelled]
        auc_after, auc_before = self.live_auc(after), self.live_auc(prior)
        if not after or not auc_after < auc_before - MANUAL_REVERT_DROP:
            self.record(
                day, "check",
                f"{reason}: live ROC AUC {auc_after:.2f} since '{change.title}' vs "
                f"{auc_before:.2f} before it; kept",
                manual=True,
            )  # fmt: skip
            return
        self.suspect, self.code = None, before
        self.servers.release(self.number, before)
        self.bad_changes_serving.discard(change.title)
        self.record(
            day, "revert",
            f"{reason}: live ROC AUC {auc_after:.2f} since '{change.title}' vs {auc_before:.2f} "
            "before it; reverted by hand",
            manual=True,
        )  # fmt: skip

    def fire(self, day: int, rule: str, about: int | None = None) -> None:
        """The stack's alert rule `rule` fires this evening (about the champion by default)."""
        self.firing.setdefault(day, set()).add(
            (rule, self.champion.version if about is None else about)
        )

    def reject(self, day: int, bad: list[int], text: str, manual: bool = False) -> None:
        self.rejected_days.update(bad)
        self.record(day, "batch-rejected", text, manual)

    def promote(self, day: int, fitted: Fitted, code: Code, why: str) -> None:
        self.versions += 1
        self.champion = _model(self.versions, code, fitted, day)
        self.servers.publish(self.number, self.champion)
        self.record(day, "promote", f"v{self.versions} promoted: {why}")


class Level0(Level):
    number, title = 0, "manual"

    def __init__(self, *args):
        super().__init__(*args)
        self.look_at: list[int] = []  # days the person looks at quality after a release
        self.removed: set[int] = set()  # bad batches the person removed from the landing folder

    def end_of_day(self, day: int) -> None:
        for change in self.releases_due(day):
            self.release(day, change, manual=True)
            self.retrain_by_hand(day, f"with the code of '{change.title}'")
            self.look_at.append(day + self.settings.notice_days)
        weeks = self.settings.level0_retrain_weeks
        if weeks and (day - self.settings.start_day) % (7 * weeks) == 7 * weeks - 1:
            self.retrain_by_hand(day, f"the {weeks}-weekly retrain")
        if day in self.look_at:
            self.revert_if_broken(day, "a person checked quality after the release")

    def retrain_by_hand(self, day: int, why: str) -> None:
        """level0_manual/train.py and handoff.py, run by a person, by the script's rules:
        training on every labelled batch is refused while one breaks the data contract (the
        person removes it from the landing folder and trains again), and the file is handed
        over only if the model beats the baseline by level 0's margin."""
        days = [d for d in self.world.labels_landed(day) if d not in self.removed]
        try:
            level0.refuse_bad_batches({f"day {d}": self.world.validation(d) for d in days})
        except level0.TrainingRefused:
            bad = [d for d in days if not self.world.batch_ok(d)]
            self.removed.update(bad)
            self.reject(day, bad, f"training refused: days {bad} break the data contract; "
                        "removed by hand, trained again", manual=True)  # fmt: skip
            days = [d for d in days if d not in bad]
        fitted = self.runs.fit(self.code, days)
        self.trained.append(fitted)
        self.record(day, "train", f"trained by hand ({why})", manual=True)
        try:
            level0.refuse_below_baseline(
                *level0.evaluate_with_baseline(fitted.pipeline, fitted.train_frame, fitted.holdout),
                LEVEL0_MIN_AUC_LIFT,
            )
        except level0.TrainingRefused as refused:
            self.record(day, "train", f"not handed over: {refused}", manual=True)
            return
        self.versions += 1
        self.champion = _model(self.versions, self.code, fitted, day)
        self.servers.publish(self.number, self.champion)
        self.record(
            day, "handoff", f"v{self.versions} handed over, service rebuilt by hand", manual=True
        )


class Level1(Level):
    number, title = 1, "continuous training"
    monitored = True
    # Does monitoring run each evening? The rollout kinds' replay leaves it out: nothing it
    # decides changes a rollout (its drift alert starts the run the day's landing starts).
    watching = True

    def __init__(self, *args):
        super().__init__(*args)
        self.respond_on: list[tuple[int, str]] = []  # (day, alert) a person will look at
        self.run_reasons: list[str] = []  # why each training run was triggered
        self.quality_alert = False  # did yesterday's monitoring raise a live-quality alert?
        self.last_alert: datetime | None = None  # when monitoring last raised an alert
        self.checks: dict[int, Assessment | None] = {}  # monitoring's decision by day
        self.verdicts: dict[int, Verdict | None] = {}  # the day's run's gate (None: stopped)

    def end_of_day(self, day: int) -> None:
        for change in self.releases_due(day):
            self.release(day, change, manual=True)  # untested: level 1 has no CI
        for when, alert in [r for r in self.respond_on if r[0] == day]:
            self.respond_on.remove((when, alert))
            self.revert_if_broken(day, f"a person looked into '{alert}'")
        checked = self.checks[day] = self.monitor(day) if self.watching else None
        # The day's batch starts a run; an alert starts one too (outside the cooldown), on
        # the same landing, which trains the same model: one run stands for both.
        drift = checked is not None and checked.retrain
        self.train_run(day, "new-data" + (" + drift" if drift else ""), self.code)
        self.check_staleness(day)

    @property
    def on_call(self) -> bool:
        """Does a person look into live-quality alerts? Where Alertmanager pages one for them:
        at level 1, which has no CI; at level 2 CI and the canary guard releases."""
        return routing.pages("LiveQualityDrop", self.number)

    def check_staleness(self, day: int) -> None:
        """The staleness rules on the champion serving tonight, with level 1's bounds: trained
        more than `max_model_age_days` ago (ModelStale), or labelled days landed more than
        `max_data_lag_days` past its newest training day (ChampionDataStale)."""
        if day - self.champion.trained > PIPELINE.max_model_age_days:
            self.fire(day, "ModelStale")
        landed = self.world.labels_landed(day)
        if landed and landed[-1] - max(self.champion.fitted.days) > PIPELINE.max_data_lag_days:
            self.fire(day, "ChampionDataStale")

    def monitor(self, day: int) -> Assessment | None:
        """Level 1's monitoring flow (level1_ct/flows/monitoring.py) in the evening, by its
        own rule (`level1_ct.assessment`): drift of the champion's newest `monitor_rows`
        answers against its reference rows; live quality of the newest `monitor_rows`
        answers whose labels have landed, whichever version gave them; the alerts, and the
        cooldown after the last one. None when there are too few answers to judge."""
        version = self.champion.version
        own = [d for d, s in self.served.items() if s.version == version]
        live = self.newest(own, PIPELINE.monitor_rows, keep=lambda s: ~s.canary)
        if not assessment.enough_to_judge(PIPELINE, sum(len(rows) for _, rows in live)):
            self.record(day, "monitoring", f"too few answers of v{version} to judge yet")
            return None
        drift = self.runs.drift(self.champion, live)
        self.drift[day] = drift.share
        labelled = [d for d in self.world.labels_landed(day) if d in self.served]
        now = self.world.evening(day)
        found = assessment.assess(
            PIPELINE, drift, self.labelled(self.newest(labelled, PIPELINE.monitor_rows)),
            self.champion.holdout_auc, self.last_alert, now,
            attributions=self.runs.attributions(self.champion, live),
        )  # fmt: skip
        self.shift[day] = found.metrics.get(assessment.SHIFT, math.nan)
        if assessment.ALERT in found.metrics:
            self.last_alert = now
        for kind, alert in found.alerts.items():
            self.record(day, "alert", alert)
            self.fire(day, ALERT_OF[kind])
        # A person is paged when a live-quality alert starts, not again while it goes on
        quality_alert = assessment.LIVE_QUALITY in found.alerts
        if self.on_call and quality_alert and not self.quality_alert:
            self.respond_on.append((day + self.settings.response_days, "live quality alert"))
        self.quality_alert = quality_alert
        return found

    def labelled(self, answers: Picked) -> pd.DataFrame:
        """These answers as the prediction store holds them once their labels have landed:
        the request's features, the probability answered, the label."""
        frames = []
        for day, rows in answers:
            served = self.served[day]
            features = self.world.answered(day).iloc[rows]
            labels = self.world.labels(day).set_index(ID)[LABEL]
            frames.append(
                features[list(FEATURE_NAMES)].assign(
                    probability=served.probability[rows],
                    **{LABEL: labels.loc[served.ids[rows]].to_numpy()},
                )
            )
        if not frames:
            return pd.DataFrame(columns=[*FEATURE_NAMES, "probability", LABEL])
        return pd.concat(frames, ignore_index=True)

    def train_run(self, day: int, reason: str, code: Code) -> None:
        """Level 1's training pipeline on today's landing: contract, window, train, gate."""
        violation = training_rules.contract({f"day {day}": self.world.validation(day)})
        if violation:
            self.verdicts[day] = None
            self.reject(day, [day], f"run stopped before training: {violation}")
            self.fire(day, "BatchQuarantined", about=day)
            return
        days = [d for d in self.world.labels_landed(day) if self.world.batch_ok(d)]
        fitted = self.runs.fit(code, training_rules.window(days, PIPELINE.window_days))
        self.trained.append(fitted)
        self.run_reasons.append(reason)
        verdict = self.verdicts[day] = self.runs.judge(fitted, code, self.champion)
        if verdict.passed:
            self.promote(day, fitted, code, f"retrained ({reason})")
        else:
            self.record(
                day, "train", f"retrained ({reason}), gate rejected: {'; '.join(verdict.reasons)}"
            )


@dataclass
class Rollout:
    """A candidate of level 2's CD in production, rolled out the level's way (`kind`)."""

    change: Change
    code: Code
    fitted: Fitted
    pushed: int
    kind: str
    model: Model | None = None  # registered and answering, from the day after the push
    days: list[int] = field(default_factory=list)  # the days it has answered on
    exposed: set[str] = field(default_factory=set)  # customers who got its answers


@dataclass(frozen=True)
class RolloutResult:
    """How one rollout ended: what `compare.rollouts` shows per kind."""

    change: str
    bad: bool  # the replay's ground truth
    kind: str
    pushed: int
    decided: int  # the day the rule decided
    action: str  # promote, rollback
    exposed: int  # customers who got the candidate's answers
    reason: str


class Level2(Level1):
    number, title = 2, "CI/CD"

    def __init__(self, *args, kind: str = "canary", watching: bool = True):
        super().__init__(*args)
        self.kind = kind  # how CD rolls a candidate out: canary, shadow or ab
        self.watching = watching
        self.canary: Rollout | None = None
        self.queued: list[Change] = []  # pushes waiting for the running rollout to end
        self.rollouts: list[RolloutResult] = []
        self.staged: dict[str, Verdict] = {}  # the staging gate's verdict per pushed change

    def push(self, change: Change, day: int) -> None:
        """CI, then CD's staging run through the gate; a green, gated candidate is rolled
        out from tomorrow (after the running rollout, if there is one)."""
        if self.canary is not None:
            self.queued.append(change)
            self.record(day, "queued", f"'{change.title}' waits for the running rollout to end")
            return
        code = change.apply(self.code)
        failures = ci_checks(code, self.runs, self.world)
        if failures:
            self.record(
                day, "ci", f"CI red for '{change.title}': {failures[0]}; nothing built or deployed"
            )
            return
        days = [d for d in self.world.labels_landed(day - 1) if self.world.batch_ok(d)]
        fitted = self.runs.fit(code, days[-PIPELINE.window_days :])
        self.trained.append(fitted)
        verdict = self.staged[change.title] = self.runs.judge(fitted, code, self.champion)
        if not verdict.passed:
            self.record(
                day, "gate",
                f"'{change.title}' stopped at the staging gate: {'; '.join(verdict.reasons)}",
            )  # fmt: skip
            return
        self.record(
            day, "delivery",
            f"CI green, staging gate passed for '{change.title}': {self.kind} tomorrow",
        )  # fmt: skip
        self.canary = Rollout(change, code, fitted, day, self.kind)

    def serve(self, day: int, canary: Model | None = None) -> Served:
        """From the day after its push, the candidate is registered with the `canary` alias
        and its `rollout_kind`, and production rolls it out that way."""
        rollout = self.canary
        if rollout is not None and rollout.model is None and rollout.pushed < day:
            self.versions += 1
            rollout.model = _model(self.versions, rollout.code, rollout.fitted, rollout.pushed)
            self.servers.start_canary(self.number, rollout.model, rollout.kind)
        served = super().serve(day, rollout.model if rollout else None)
        if rollout is not None and rollout.model is not None and len(served.ids):
            rollout.days.append(day)
            exposed = served.ids[served.canary].tolist()  # a shadow's: none
            rollout.exposed.update(exposed)
            if rollout.change.bad:
                self.bad_exposed.update(exposed)
        return served

    def end_of_day(self, day: int) -> None:
        if self.canary is not None and day in self.canary.days:
            self.judge_rollout(day)
        if self.canary is None and self.queued:
            self.push(self.queued.pop(0), day)
        super().end_of_day(day)

    def judge_rollout(self, day: int) -> None:
        """Level 2's rollout rule of the kind, on everything the arms answered since the
        rollout started (level2_cicd/rollout.py). A canary's or a shadow's window ends once
        the candidate has its minimum of requests, or after CANARY_MAX_DAYS (a small day of
        traffic may not be enough); an A/B test waits for labels, up to its time limit."""
        rollout = self.canary
        decision = {"canary": self.canary_decision, "shadow": self.shadow_decision,
                    "ab": self.ab_decision}[rollout.kind](rollout, day)  # fmt: skip
        if decision.action == "wait":
            return
        self.canary = None
        promote = decision.action != "rollback"
        self.servers.end_canary(self.number, promote)
        self.rollouts.append(RolloutResult(
            rollout.change.title, rollout.change.bad, rollout.kind, rollout.pushed, day,
            decision.action, len(rollout.exposed), "; ".join(decision.reasons),
        ))  # fmt: skip
        if not promote:
            undone = "discarded" if rollout.kind == "shadow" else "rolled back"
            self.record(day, "canary", f"{rollout.kind} of '{rollout.change.title}' {undone}: "
                        f"{decision.summary}")  # fmt: skip
            self.fire(day, "CanaryRolledBack", about=rollout.model.version)
            return
        self.release(day, rollout.change, manual=False)
        self.champion = rollout.model
        self.record(
            day, "promote",
            f"v{rollout.model.version} promoted: {rollout.kind} of '{rollout.change.title}' "
            "within bounds",
        )  # fmt: skip

    def _window_over(self, rollout: Rollout, candidate_requests: int) -> bool:
        return (
            candidate_requests >= CICD.canary_min_requests
            or len(rollout.days) >= CANARY_MAX_DAYS
        )  # fmt: skip

    def canary_decision(self, rollout: Rollout, day: int) -> Decision:
        served = [self.served[d] for d in rollout.days]
        champion = _arm(np.concatenate([s.probability[~s.canary] for s in served]))
        canary = _arm(np.concatenate([s.probability[s.canary] for s in served]))
        over = self._window_over(rollout, canary.requests)
        return decide(champion, canary, CICD.bounds(), window_over=over)

    def shadow_decision(self, rollout: Rollout, day: int) -> Decision:
        """The shadow scored a copy of every request the champion answered."""
        served = [self.served[d] for d in rollout.days]
        champion = np.concatenate([s.probability for s in served])
        shadow = np.concatenate([s.shadow for s in served])
        changed = int(disagree(champion, shadow).sum())
        over = self._window_over(rollout, len(shadow))
        return decide_shadow(_arm(champion), _arm(shadow), changed, CICD.bounds(),
                             CICD.shadow_bounds(), window_over=over)  # fmt: skip

    def ab_decision(self, rollout: Rollout, day: int) -> Decision:
        """Each arm's decisions on the rollout's days whose labels have landed by today."""
        landed = set(self.world.labels_landed(day))
        arms = {True: [0, 0], False: [0, 0]}  # candidate?: [decisions, correct]
        for d in (d for d in rollout.days if d in landed):
            served = self.served[d]
            label = self.world.labels(d).set_index(ID)[LABEL].loc[served.ids].to_numpy()
            right = (served.probability >= THRESHOLD) == label.astype(bool)
            for candidate in (True, False):
                mine = served.canary == candidate
                arms[candidate][0] += int(mine.sum())
                arms[candidate][1] += int(right[mine].sum())
        elapsed = (day - rollout.days[0] + 1) * 24 * 3600  # whole days answered
        return decide_ab(Labelled(*arms[False]), Labelled(*arms[True]), CICD.ab_rule(), elapsed)


def _arm(probability: np.ndarray) -> ArmStats:
    """One arm's answers as the service counts them (one request each). Latency is not
    simulated (0 ms on both)."""
    return ArmStats(
        len(probability), errors=0, p95_ms=0.0, histogram=tuple(bin_counts(probability))
    )


def ci_checks(code: Code, runs: Runs, world: World) -> list[str]:
    """Level 2's CI on the pushed code: the checks of its ML Test Score sections
    (`shared.expectations`, which tests/unit/model and tests/unit/infrastructure run) on a
    model the pushed code trains on a sample, scored by the pushed code's service. The
    failures, in words.

    model: the pipeline beats the baseline on its hold-out. infrastructure: the service
    answers what the model gives (training/serving consistency), and a customer with more
    late deliveries and complaints is scored riskier (a directional expectation).
    """
    days = [d for d in world.labels_landed(world.settings.start_day - 1) if world.batch_ok(d)]
    fitted = runs.fit(code, days[: max(4, len(days) // 2)])
    sample = pd.concat([fitted.holdout.head(50), pd.DataFrame([example_record()])])
    found = [
        expectations.beats_the_baseline(
            fitted.pipeline, fitted.train_frame, fitted.holdout, PIPELINE.min_auc_lift
        ),
        expectations.serving_matches_the_model(code.score, fitted.pipeline, sample),
        expectations.riskier_when_late_and_complaining(code.score, fitted.pipeline),
    ]
    return [failure for failure in found if failure is not None]


LEVELS = (Level0, Level1, Level2)
