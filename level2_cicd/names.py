"""Level 2's names, each defined once: the CI and CD flows and their deployments, the training
pipeline's deployments that CD creates, the registry alias of a delivery, and the images CI
builds. A leaf module: it imports nothing, so every other module can import it (CI starts CD
by name, CD runs CI's images, the hook and `run.py` start either)."""

from __future__ import annotations

# The flows and their deployments, as "<flow>/<deployment>" for run_deployment
CI_FLOW, CI_DEPLOYMENT = "ci", "level2-ci"
CD_FLOW, CD_DEPLOYMENT = "cd", "level2-cd"
CI = f"{CI_FLOW}/{CI_DEPLOYMENT}"
CD = f"{CD_FLOW}/{CD_DEPLOYMENT}"

# The training pipeline's deployments (level 1's flow, at the delivered commit)
STAGING = "staging"  # what CD deploys and runs for each commit, before production
PRODUCTION = "production"  # the one level 1's triggers run, once a commit is delivered
ENTRYPOINT = "level1_ct/flows/training.py:training_pipeline"

WORK_POOL = "level2-pipeline"  # the Prefect work pool the staging and production runs go to
CANDIDATE = "candidate"  # the registry alias of the version being delivered
# The registry alias of the version production is trying out, whatever the rollout kind; its
# version tag ROLLOUT_KIND says which: a canary share of customers answered by it, a shadow
# scoring copies of every request (no customer sees its answers), or an A/B test
CANARY = "canary"
ROLLOUT_KIND = "rollout_kind"
ROLLOUT_KINDS = ("canary", "shadow", "ab")

# The Dockerfile's targets and the images' names (level 0's slim service is mlops-levels/serving)
IMAGES = {"pipeline": "level2-pipeline", "serving": "level2-serving"}
