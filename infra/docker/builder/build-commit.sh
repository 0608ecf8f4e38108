#!/bin/sh
# Build and push one commit's images with buildah, no Docker daemon:
#
#   build-commit.sh CONTEXT COMMIT BASE_IMAGE TARGET=IMAGE [TARGET=IMAGE ...]
#
# CONTEXT is a checkout of COMMIT; each TARGET of its infra/docker/commit.Dockerfile is built
# on BASE_IMAGE (mlops-levels/python-env, from the registry) and pushed as IMAGE. Level 2's CI
# runs it in a Job on a cluster (level2_cicd/cluster_images.py). The registry is the
# cluster's own, over plain HTTP inside the cluster (--tls-verify=false).
set -eu
# Root here is the pod's user namespace's (hostUsers: false): refuse to be the node's. It has
# the baseline's capabilities (no SYS_ADMIN) and the runtime's seccomp profile, which refuses
# new namespaces. Without SYS_ADMIN buildah would try to make a user namespace of its own:
# tell it this one is already set up and that it is rootless (its storage and run paths too);
# it then neither unshares nor mounts, and vfs copies layers.
if [ "$(id -u)" = 0 ] && awk 'NR == 1 && $1 == 0 && $2 == 0 { found = 1 } END { exit !found }' /proc/self/uid_map; then
    echo "refusing to build as the node's root: this pod has no user namespace (hostUsers: false)" >&2
    exit 3
fi
export _CONTAINERS_USERNS_CONFIGURED=done _CONTAINERS_ROOTLESS_UID=1
export XDG_RUNTIME_DIR=/var/tmp/buildah/run
mkdir -p "$XDG_RUNTIME_DIR"
[ $# -ge 4 ] || { echo "usage: $0 CONTEXT COMMIT BASE_IMAGE TARGET=IMAGE..." >&2; exit 2; }
context=$1 commit=$2 base=$3
shift 3
for pair in "$@"; do
    target=${pair%%=*}
    image=${pair#*=}
    echo "building $image (--target $target) on $base"
    buildah build --quiet --tls-verify=false --format docker --target "$target" \
        --file "$context/infra/docker/commit.Dockerfile" \
        --build-arg BASE_IMAGE="$base" --build-arg COMMIT="$commit" \
        --tag "$image" "$context"
    buildah push --quiet --tls-verify=false "$image"
    echo "pushed $image"
done
