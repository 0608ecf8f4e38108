# One commit's images, built by level 2's CI (level2_cicd/flows/ci.py) from a checkout of the
# commit: with the docker SDK on the stack, with buildah in a Job on a cluster
# (deploy/k8s/level2/images.yaml):
#
#   --target pipeline   the commit's flows on the locked environment (mlops-levels/python-env)
#   --target serving    the same, starting the prediction service that follows the registry
#
# Dependencies come from requirements.lock through `make images` (BASE_IMAGE); a push changes
# code, so a commit's build only adds its code: seconds, and no network. Only COPY, no RUN: a
# builder without privileges (buildah in a Job, no Docker daemon) can build it.
ARG BASE_IMAGE=mlops-levels/python-env:latest

FROM ${BASE_IMAGE} AS pipeline
ARG COMMIT=unknown
COPY shared/ /app/shared/
COPY level1_ct/ /app/level1_ct/
COPY level2_cicd/ /app/level2_cicd/
ENV CODE_VERSION=${COMMIT}

FROM pipeline AS serving
ENV L1_SERVE_HOST=0.0.0.0
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/health', timeout=2)"]
CMD ["python", "-m", "level1_ct.service"]
