#!/bin/sh
# Create /opt/venv and install the given requirements, pinned by the lock: from the
# wheelhouse when WHEELHOUSE=1 (offline: no PyPI, no proxy in the way), else from PyPI.
set -eu
python3.11 -m venv /opt/venv
if [ "${WHEELHOUSE:-0}" = 1 ]; then index="--no-index --find-links /wheels"; else index=""; fi
# shellcheck disable=SC2086
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check $index -c /build/requirements.lock "$@"
find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
