# syntax=docker/dockerfile:1
# nesydet: one image for the API (default command) and the inference worker (`nesydet worker`).
#
#   docker build -t nesydet .
#   docker run -p 8000:8000 -v nesydet-data:/data nesydet          # API, embedded SQLite
#   docker run -v nesydet-data:/data nesydet nesydet worker        # a worker (queue "inference")
#
# docker-compose.yml runs both against PostgreSQL, Redis and MinIO.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# Build stage: a virtual environment with PyTorch and the project, copied whole into the runtime.
# Every dependency ships binary wheels for CPython 3.11, so no compiler is needed here.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

# Every package from requirements/lock.txt (`make lock`): exact versions, each wheel checked
# against its hash, PyTorch included (its pins come from requirements/torch.txt). --no-deps:
# the lock is complete, nothing is resolved anew. These are the standard PyPI builds of
# PyTorch: they run on the CPU, and on a CUDA host (NVIDIA driver + container toolkit,
# `docker run --gpus all` or the GPU reservation in docker-compose.yml) the same build uses the
# GPU; nothing in the image changes. Own layer: it is the big one, and it changes only with the
# lock. The lock holds the dev and s3 extras too (one lock for every install).
COPY requirements/lock.txt /tmp/requirements/lock.txt
RUN pip install --require-hashes --no-deps --only-binary :all: -r /tmp/requirements/lock.txt

# Then the project itself (not editable), its dependencies already there; built with the
# setuptools of the lock, so without build isolation and without a download.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
# hadolint ignore=DL3013
RUN pip install --no-deps --no-build-isolation . \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------
# Runtime stage.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# swi-prolog-nox: the symbolic reasoner (pyswip); libgl1 + libglib2.0-0: OpenCV (ultralytics).
# Unpinned on purpose: bookworm's versions only move with security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        swi-prolog-nox libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user owns only what the service writes: /app/var, /data and /metrics-data.
# Named volumes mounted on /data and /metrics-data start with this ownership.
RUN groupadd --system --gid 10001 nesydet \
    && useradd --system --uid 10001 --gid nesydet --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin nesydet \
    && mkdir -p /app/var/yolo_cfg /app/var/matplotlib /data /metrics-data \
    && chown -R nesydet:nesydet /app/var /data /metrics-data

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Migrations (`nesydet migrate` reads ./alembic.ini), Prolog rules and model weights.
COPY alembic.ini ./
COPY migrations/ migrations/
COPY rules/ rules/
COPY models/ models/

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/app \
    MPLCONFIGDIR=/app/var/matplotlib \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    YOLO_CONFIG_DIR=/app/var/yolo_cfg \
    NESYDET_VAR_DIR=/data/var \
    NESYDET_DATABASE_URL=sqlite+aiosqlite:////data/nesydet.db \
    NESYDET_STORAGE_BACKEND=local \
    NESYDET_STORAGE_ROOT=/data/storage \
    NESYDET_METRICS_DIR=/metrics-data \
    NESYDET_MODELS_DIR=/app/models \
    NESYDET_ONNX_CACHE_DIR=/data/var/onnx \
    NESYDET_RULES_DIR=/app/rules \
    NESYDET_HOST=0.0.0.0 \
    NESYDET_PORT=8000 \
    NESYDET_LOG_FORMAT=json \
    NESYDET_LOG_LEVEL=INFO

# Numeric, so that runAsNonRoot-style checks can verify it (10001 = nesydet).
USER 10001:10001

EXPOSE 8000

# Liveness of the API. The worker serves no HTTP: compose turns this check off for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["nesydet", "serve", "--host", "0.0.0.0", "--port", "8000", "--migrate"]
