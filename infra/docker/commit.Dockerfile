# One commit's images, built by level 2's CI (level2_cicd/flows/ci.py) from a checkout of the
# commit, with the docker SDK:
#
#   --target pipeline   the commit's flows on the locked environment (mlops-levels/python)
#   --target serving    the same, starting the prediction service that follows the registry
#
# Dependencies come from requirements.lock through `make images` (BASE_IMAGE); a push changes
# code, so a commit's build only adds its code: seconds, and no network.
ARG BASE_IMAGE=mlops-levels/python:latest

FROM ${BASE_IMAGE} AS pipeline
# Not named CODE_VERSION: the base image sets that ENV, and an ENV wins over an ARG of the
# same name, so the base's commit would be recorded instead of this one.
ARG COMMIT=unknown
USER root
RUN rm -rf /app/shared /app/level0_manual /app/level1_ct /app/level2_cicd
COPY shared/ /app/shared/
COPY level1_ct/ /app/level1_ct/
COPY level2_cicd/ /app/level2_cicd/
ENV CODE_VERSION=${COMMIT}
USER app

FROM pipeline AS serving
ENV L1_SERVE_HOST=0.0.0.0
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/health', timeout=2)"]
CMD ["python", "-m", "level1_ct.service"]
