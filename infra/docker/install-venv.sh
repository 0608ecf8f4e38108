#!/bin/sh
# Create /opt/venv and install the given requirements, pinned by the lock: from the
# wheelhouse when WHEELHOUSE=1 (offline: no PyPI, no proxy in the way), else from PyPI.
set -eu
python3.11 -m venv /opt/venv
if [ "${WHEELHOUSE:-0}" = 1 ]; then index="--no-index --find-links /wheels"; else index=""; fi
# pip compiles each module to bytecode as it installs: keep it. The images run as a user who
# cannot write it, so without it every container start and every flow run compiles MLflow,
# Prefect, pandas and scikit-learn again (importing level 1's flows: 34 s, 10 s with it).
# shellcheck disable=SC2086
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check $index -c /build/requirements.lock "$@"
