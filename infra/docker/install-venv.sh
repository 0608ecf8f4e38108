#!/bin/sh
# Create /opt/venv and install the given requirements, pinned by the lock: from the
# wheelhouse when it holds wheels (offline, no proxy in the way), else from PyPI.
set -eu
python3.11 -m venv /opt/venv
if ls /wheels/*.whl >/dev/null 2>&1; then index="--no-index --find-links /wheels"; else index=""; fi
# shellcheck disable=SC2086
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check $index -c /build/requirements.lock "$@"
find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
