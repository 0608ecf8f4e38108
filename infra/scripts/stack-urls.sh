#!/usr/bin/env bash
# Where the LEVEL stack answers, as `make up LEVEL=<level>` prints it: the ports compose
# publishes, which come from the shell's environment, else from .env, else the defaults.
#
#   infra/scripts/stack-urls.sh 0|1|2       (ENV_FILE: default .env at the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
level="${1:?usage: stack-urls.sh 0|1|2}"
while IFS= read -r line; do  # KEY=value lines; a variable set in the shell wins, as in compose
    key="${line%%=*}"
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && [ -z "${!key+set}" ] && export "$key=${line#*=}"
done < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "${ENV_FILE:-.env}" 2>/dev/null || true)
url() { echo "http://127.0.0.1:$1"; }
mlflow="MLflow $(url "${MLFLOW_PORT:-5000}")"
prefect="Prefect $(url "${PREFECT_PORT:-4200}")"
alerts="Prometheus $(url "${PROMETHEUS_PORT:-9090}")/classic/alerts  alert inbox $(url "${INBOX_PORT:-8004}")"
case "$level" in
    0) echo "level 0 is up: $mlflow  service $(url "${L0_SERVE_PORT:-8000}")/docs" ;;
    1) echo "level 1 is up: $mlflow  $prefect  service $(url "${L1_SERVE_PORT:-8001}")/docs  Evidently $(url "${EVIDENTLY_PORT:-8002}")  $alerts" ;;
    2) echo "level 2 is up: $mlflow  $prefect  production $(url "${L2_SERVE_PORT:-8001}")/docs  git $(url "${L2_GIT_PORT:-8003}")/ml.git  $alerts (logins: .env)" ;;
    *) echo "usage: stack-urls.sh 0|1|2" >&2; exit 2 ;;
esac
