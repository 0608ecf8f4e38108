#!/usr/bin/env bash
# Build every image the stacks need: `make images`. Works with Docker Hub (a laptop) and
# without it (CI, a workshop room behind a firewall):
#
#   OFFLINE=auto (default)  use Docker Hub if `docker pull` works, else the offline path
#   OFFLINE=0               official base images: python:3.11-slim-bookworm, postgres:15-bookworm;
#                           Python packages from PyPI inside the build
#   OFFLINE=1               a Debian bookworm base made with debootstrap, Postgres from Debian's
#                           package, Python packages from a wheelhouse built on this host from
#                           requirements.lock (so no build step needs PyPI or a proxy's CA)
#
# Either way the stacks use the same names: mlops-levels/{python,python-env,serving,observability,builder}:latest
# (and :<version> from pyproject.toml, for deploy/k8s)
# and mlops-levels/postgres:15. Needs: a Docker engine; offline also debootstrap (Debian) and
# Python 3.11 on the host (PYTHON, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
. infra/scripts/lib.sh

OFFLINE="${OFFLINE:-auto}"
PYTHON="${PYTHON:-.venv/bin/python}"
PREFIX=mlops-levels
OFFICIAL_PYTHON=python:3.11-slim-bookworm
OFFICIAL_POSTGRES=postgres:15-bookworm
LOCAL_BASE="$PREFIX/debian:bookworm"

LOG=var/images-build.log
mkdir -p var && : >"$LOG"

say() { echo "images: $*"; }

# Run a build step with its output in $LOG; on failure show the end of it.
build() {
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        say "failed: $* (full log: $LOG)"
        exit 1
    fi
}

if [ "$OFFLINE" = auto ]; then
    # Ask the registry for the manifest only: a timed full pull could exceed the timeout on
    # slow Wi-Fi and wrongly pick the offline path.
    if timeout 30 docker manifest inspect "$OFFICIAL_PYTHON" >/dev/null 2>&1; then OFFLINE=0; else OFFLINE=1; fi
    say "Docker Hub $([ "$OFFLINE" = 0 ] && echo reachable || echo 'not reachable: offline path')"
fi

if [ "$OFFLINE" = 1 ]; then
    if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || { say "debootstrap is needed (apt-get install debootstrap)"; exit 1; }
        rootfs=$(mktemp -d)
        say "building $LOCAL_BASE with debootstrap from $(debian_mirror) (~30 s)"
        debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >/dev/null
        tar -C "$rootfs" -c . | docker import - "$LOCAL_BASE" >/dev/null
        rm -rf "$rootfs"
    fi
    base="$LOCAL_BASE"
    lock_hash=$(sha256sum requirements.lock | cut -c1-16)
    if [ "$(cat infra/wheelhouse/.lock-hash 2>/dev/null)" != "$lock_hash" ]; then
        say "building the wheelhouse from requirements.lock on the host (first time: a few minutes)"
        find infra/wheelhouse -name '*.whl' -delete
        "$PYTHON" -m pip wheel --quiet --disable-pip-version-check -r requirements.lock -w infra/wheelhouse
        echo "$lock_hash" >infra/wheelhouse/.lock-hash
    fi
    say "building $PREFIX/postgres:15 from Debian's postgresql-15"
    build docker build -t "$PREFIX/postgres:15" --build-arg BASE_IMAGE="$LOCAL_BASE" infra/docker/postgres
    wheelhouse=1
else
    base="$OFFICIAL_PYTHON"
    build docker pull "$OFFICIAL_PYTHON"
    build docker pull "$OFFICIAL_POSTGRES"
    docker tag "$OFFICIAL_POSTGRES" "$PREFIX/postgres:15"
    wheelhouse=0  # packages from PyPI, even if an earlier offline build left wheels here
fi

# The project's version (pyproject.toml) tags them too: Kubernetes' manifests never use :latest
# (deploy/k8s/components/images).
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
# The commit the images are built from, marked -dirty with uncommitted changes (as lineage does).
code_version=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$code_version" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    code_version="$code_version-dirty"
fi
for target in serving python-env python; do
    say "building $PREFIX/$target:latest on $base"
    build docker build -f infra/docker/Dockerfile --target "$target" \
        --build-arg BASE_IMAGE="$base" --build-arg WHEELHOUSE="$wheelhouse" \
        --build-arg CODE_VERSION="$code_version" -t "$PREFIX/$target:latest" \
        -t "$PREFIX/$target:$version" .
done
say "building $PREFIX/observability:latest (Prometheus, Alertmanager, HAProxy) from Debian's packages"
build docker build -t "$PREFIX/observability:latest" -t "$PREFIX/observability:$version" \
    --build-arg BASE_IMAGE="$base" infra/docker/observability
say "building $PREFIX/builder:latest (buildah and a registry, for level 2's CI on a cluster) from Debian's packages"
build docker build -t "$PREFIX/builder:latest" -t "$PREFIX/builder:$version" \
    --build-arg BASE_IMAGE="$base" infra/docker/builder
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | image_sizes "$PREFIX"
