"""Level 2's alert receiver: level 1's actions (level1_ct/alerts.py), on the pipeline CD
delivered: a drift alert retrains with ct-training/production. The canary's rollback is CD's
own decision (level2_cicd/rollout.py), taken while it watches the canary; its alert,
CanaryRolledBack, pages a person.

    python -m level2_cicd.alerts    # the inbox on http://127.0.0.1:8004 (ALERTS_HOST/PORT)
"""

from __future__ import annotations

from level1_ct.alerts import actions
from level1_ct.names import TRAINING
from level2_cicd.names import PRODUCTION
from shared.alert_inbox import run

if __name__ == "__main__":
    run(actions(f"{TRAINING}/{PRODUCTION}"), "Level 2 alerts")
