"""Benchmark level 2: the lead time from `git push` to the new model serving in production,
in the embedded mode (the level-2 demo: CI, staging, a canary window, promotion).

Prints figures, asserts nothing. Target (issue "Level 2"): under 10 minutes on 2 cores with a
warm image cache. The embedded mode builds no images; the canary window is part of it.

    make bench-level2
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from level2_cicd.demo import DemoSettings, demo
from shared.servers import free_port


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-level2-"))
    try:
        settings = DemoSettings(
            var=work, mlflow_port=free_port(), prefect_port=free_port(),
            level2_service_port=free_port(),
        )  # fmt: skip
        figures = demo(settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nlead time, git push -> new model served in production: {figures['lead_time_s']:.0f} s "
          f"(target < 600 s; canary window {settings.rollout_window_seconds:.0f} s, "
          f"n_iter={settings.n_iter}, images not built)")  # fmt: skip


if __name__ == "__main__":
    main()
