"""The levels' prediction services during the replay: who answers each day's customers.

A level's process decides which model serves and which code serves it; the services answer.
Two kinds of services take the same calls:

- `InProcess` (the default, `make compare`): each level's service is a function call that
  scores the day's customers as the service would;
- `compare.stacks.Stacks` (`make compare STACK=docker`): each level's real service in its
  container stack, over HTTP, with the models handed over or registered the level's way.

Calls, for a level: `start` (its first model and code), `publish` (a new champion),
`start_canary` / `end_canary` (level 2's rollout of a candidate, of a kind: canary, shadow,
ab), `release` (new serving code), `answer` (the day's customers, one request each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from compare.settings import level_defaults
from compare.world import World
from level2_cicd.service import ProductionSettings, canary_arm
from shared.api import predictions
from shared.schema import ID

if TYPE_CHECKING:
    from compare.changes import Code
    from compare.served import Model

# Of production's customers, during a rollout (production's defaults, not the environment's)
CANARY_SHARE = level_defaults(ProductionSettings).canary_share
AB_SHARE = level_defaults(ProductionSettings).ab_share
CANARY_SPLIT = "customer"  # production's split in the replay: the same customers every run


@dataclass(frozen=True)
class Answers:
    """What a level's service answered on a day, one customer per request, in the day's
    order: the answered customers, their churn probability and the model version that
    answered each (the canary's or the champion's); `failed` requests got a 422."""

    requests: int
    failed: int
    ids: np.ndarray
    probability: np.ndarray
    version: np.ndarray
    shadow: np.ndarray | None = None  # a shadow's probabilities for the same customers


class Servers(Protocol):
    def start(self, level: int, model: Model, code: Code) -> None: ...
    def publish(self, level: int, model: Model) -> None: ...
    def start_canary(self, level: int, model: Model, kind: str = "canary") -> None: ...
    def end_canary(self, level: int, promote: bool) -> None: ...
    def release(self, level: int, code: Code) -> None: ...
    def answer(self, level: int, day: int) -> Answers: ...
    def __enter__(self) -> Servers: ...
    def __exit__(self, *exc) -> None: ...


@dataclass
class _Service:
    champion: Model
    code: Code  # the serving code: what turns the model's output into the answer
    canary: Model | None = None  # the candidate, rolled out as `kind`
    kind: str = "canary"


class InProcess:
    """Each level's service as a function call: the rows the API's contract accepts are
    scored with the serving code's `churn_probabilities` and answered as the API answers
    (`shared.api.predictions`, rounded); level 2's candidate answers the customers
    `canary_arm` gives it, as production routes them with `canary_split="customer"` (a
    canary) or in an A/B test; a shadow answers nobody and scores everyone."""

    def __init__(self, world: World):
        self.world = world
        self.services: dict[int, _Service] = {}

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, level: int, model: Model, code: Code) -> None:
        self.services[level] = _Service(model, code)

    def publish(self, level: int, model: Model) -> None:
        self.services[level].champion = model

    def start_canary(self, level: int, model: Model, kind: str = "canary") -> None:
        self.services[level].canary, self.services[level].kind = model, kind

    def end_canary(self, level: int, promote: bool) -> None:
        service = self.services[level]
        if promote:
            service.champion = service.canary
        service.canary = None

    def release(self, level: int, code: Code) -> None:
        self.services[level].code = code

    def answer(self, level: int, day: int) -> Answers:
        service = self.services[level]
        features = self.world.features(day)
        answered = features[self.world.answerable(day)]
        ids = answered[ID].to_numpy()
        candidate = service.canary
        share = {"canary": CANARY_SHARE, "ab": AB_SHARE, "shadow": 0.0}[service.kind]
        arm = np.array([bool(candidate) and canary_arm(i, share) for i in ids], bool)
        probability = np.zeros(len(answered))
        version = np.full(len(answered), service.champion.version)
        if (~arm).any():
            probability[~arm] = service.code.score(service.champion.pipeline, answered[~arm])
        if arm.any():
            # The canary runs the candidate's code (in the stacks, production's own code)
            probability[arm] = service.canary.code.score(service.canary.pipeline, answered[arm])
            version[arm] = service.canary.version
        shadow = None
        if candidate is not None and service.kind == "shadow":  # a copy of every request
            shadow = candidate.code.score(candidate.pipeline, answered)
        answer = [p["churn_probability"] for p in predictions(list(ids), probability)]
        return Answers(
            len(features), len(features) - len(answered), ids, np.array(answer), version, shadow
        )
