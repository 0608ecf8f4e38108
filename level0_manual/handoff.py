"""Level 0, step 4: the hand-off. The "ops" side copies the exported model files into the
service's model folder; the service only sees them after a restart.

This is deliberately a copy and nothing more: no check that the file is the one that was
evaluated, no record in a registry, no way back but finding the old file. That is what
level 0 looks like, and what levels 1 and 2 replace.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from level0_manual.service import ServiceSettings
from level0_manual.train import TrainSettings
from shared import model_card, model_file

BANNER = "=" * 72


def handoff(exported: Path, serving: Path) -> list[Path]:
    """Copy the exported model files from `exported` to `serving`; returns the copies."""
    sources = [Path(exported) / name for name in (model_file.MODEL_FILE, model_file.CARD_FILE)]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"nothing to hand over, missing {missing}: run make level0-train")
    readable = Path(exported) / model_card.FILE  # the card a person reads, where training wrote one
    if readable.is_file():
        sources.append(readable)
    serving = Path(serving)
    serving.mkdir(parents=True, exist_ok=True)
    print(BANNER)
    print("MANUAL HAND-OFF (level 0): a person copies the model file to the service")
    copies = []
    for source in sources:  # the model first, its cards last
        target = serving / source.name
        print(f"  cp {source} {target}")
        # Copy beside the target, then rename over it: a service (re)starting mid-copy
        # sees the old file or the new one, never half a file.
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)
        copies.append(target)
    print("Nothing checked this file. The running service still serves the old model until")
    print("it is restarted (locally: Ctrl-C, then make level0-serve).")
    print(BANNER)
    return copies


def main() -> None:
    try:
        handoff(TrainSettings().export_dir, ServiceSettings().model_dir)
    except FileNotFoundError as missing:
        sys.exit(f"hand-off failed: {missing}")


if __name__ == "__main__":
    main()
