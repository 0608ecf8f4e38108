#!/usr/bin/env bash
# `make k8s-up LEVEL=N [K8S_CLUSTER=kind|k3d]`: a local cluster (created if missing), the
# images `make images` built loaded into it, the level's manifests applied (deploy/k8s), and
# every workload waited for. Run by a person on a machine that has kind or k3d; not by CI,
# which can have no cluster (deploy/k8s/README.md says what CI proves instead).
set -euo pipefail
cd "$(dirname "$0")/../.."

level="${1:?usage: k8s-up.sh LEVEL [kind|k3d]}"
cluster="${2:-kind}"
name=mlops
namespace="mlops-level$level"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
images=("mlops-levels/python:$version" "mlops-levels/serving:$version"
        "mlops-levels/observability:$version" "mlops-levels/postgres:15"
        "mlops-levels/builder:$version")
base="mlops-levels/python-env:$version"  # level 2's CI builds each commit's images on it
say() { echo "k8s-up: $*"; }
docker image inspect "${images[@]}" "$base" >/dev/null 2>&1 \
    || { say "the images tagged $version are missing: make images (it tags them)"; exit 1; }

case "$cluster" in
    kind)
        command -v kind >/dev/null || { say "kind is not installed: https://kind.sigs.k8s.io"; exit 1; }
        kind get clusters 2>/dev/null | grep -qx "$name" || kind create cluster --name "$name"
        say "loading ${images[*]} into kind (a minute or two)"
        kind load docker-image --name "$name" "${images[@]}"
        kubectl config use-context "kind-$name" >/dev/null ;;
    k3d)
        command -v k3d >/dev/null || { say "k3d is not installed: https://k3d.io"; exit 1; }
        k3d cluster list "$name" >/dev/null 2>&1 || k3d cluster create "$name"
        say "importing ${images[*]} into k3d (a minute or two)"
        k3d image import --cluster "$name" "${images[@]}"
        kubectl config use-context "k3d-$name" >/dev/null ;;
    *) say "K8S_CLUSTER must be kind or k3d, not $cluster"; exit 1 ;;
esac

# A Job's pod template cannot change: finished migration Jobs go, so a new image migrates again
for job in mlflow-migrate prefect-migrate; do
    if [ "$(kubectl -n "$namespace" get "job/$job" -o jsonpath='{.status.succeeded}' 2>/dev/null)" = 1 ]; then
        kubectl -n "$namespace" delete "job/$job"
    fi
done
kubectl kustomize --load-restrictor LoadRestrictionsNone "deploy/k8s/level$level" | kubectl apply -f -
kubectl -n "$namespace" rollout status statefulset/postgres --timeout=300s
# The databases' migrations (deploy/k8s/README.md, "Migrations"): the servers wait for them
for job in mlflow-migrate prefect-migrate; do
    if kubectl -n "$namespace" get "job/$job" >/dev/null 2>&1; then
        say "waiting for the $job Job"
        kubectl -n "$namespace" wait --for=condition=complete "job/$job" --timeout=600s
    fi
done
# Level 2's CI builds each commit's images on the base, from the cluster's registry
# (deploy/k8s/level2/images.yaml): pushed there through a port-forward (Docker speaks plain
# HTTP to a registry on 127.0.0.1)
if [ "$level" = 2 ]; then
    kubectl -n "$namespace" rollout status deployment/registry --timeout=300s
    kubectl -n "$namespace" port-forward svc/registry 5001:5000 >/dev/null &
    forward=$!
    trap 'kill $forward 2>/dev/null' EXIT
    for _ in $(seq 30); do
        curl -fsS -o /dev/null http://127.0.0.1:5001/v2/ && break
        sleep 1
    done
    say "pushing $base to the cluster's registry (a few minutes the first time)"
    docker tag "$base" "127.0.0.1:5001/$base"
    docker push --quiet "127.0.0.1:5001/$base"
    kill "$forward"
fi
# Level 2 starts where level 1 left off: its bootstrap Job lands days and trains a champion
if kubectl -n "$namespace" get job/bootstrap >/dev/null 2>&1; then
    say "waiting for the bootstrap Job (days landed, a first champion: a few minutes)"
    kubectl -n "$namespace" wait --for=condition=complete job/bootstrap --timeout=1200s
fi
# Level 0's and level 1's prediction service is ready once it has a model: after the first
# hand-off (level 0) or the first champion (level 1); the other workloads are waited for.
for deployment in $(kubectl -n "$namespace" get deployments -o name); do
    [ "$deployment" = deployment.apps/serving ] && continue
    [ "$(kubectl -n "$namespace" get "$deployment" -o jsonpath='{.spec.replicas}')" = 0 ] && continue
    kubectl -n "$namespace" rollout status "$deployment" --timeout=600s
done
say "level $level runs in namespace $namespace. Open a UI with a port-forward, e.g.:"
say "  kubectl -n $namespace port-forward svc/mlflow 5000    # http://127.0.0.1:5000"
if [ "$level" = 2 ]; then
    say "  kubectl -n $namespace port-forward svc/production 8001:8000"
    say "the git server starts empty: push this checkout to it, and CI/CD checks and delivers it"
    say "  kubectl -n $namespace port-forward svc/git 8003:8000"
    say "  git push http://127.0.0.1:8003/ml.git HEAD:main    # login: L2_GIT_USERNAME / L2_GIT_PASSWORD in .env"
else
    say "  kubectl -n $namespace port-forward svc/serving 8001:8000"
fi
