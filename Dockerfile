# TSCNC image: the API, the Celery workers and the `tscnc` command line (docker-compose.yml).
#
# Installs the way `make install` does: the pinned torch/torchvision first (the PyPI wheels bring
# their own CUDA libraries, so the same image runs GPU workers under the NVIDIA container
# toolkit and CPU workers anywhere), then the project, editable, from /app (the API serves the
# dashboard from /app/frontend). Build: docker compose build   (or docker build -t tscnc .)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Layer 1 (large, rarely changes): the pinned PyTorch.
RUN pip install torch==2.14.1 torchvision==0.29.1

# Layer 2: the project's dependencies, from pyproject.toml alone (stub packages), so editing
# the source does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p tscnc backend worker \
 && touch tscnc/__init__.py backend/__init__.py worker/__init__.py \
 && pip install -e . \
 && rm -rf tscnc backend worker

# Layer 3: the source, installed editable (no dependency changes: --no-deps).
COPY tscnc ./tscnc
COPY backend ./backend
COPY worker ./worker
COPY frontend ./frontend
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 10001 tscnc \
 && mkdir -p /artifacts /app/data \
 && chown tscnc:tscnc /artifacts /app/data

# Never root at run time. /artifacts (checkpoints) and /app/data (datasets: specs name
# data_dir "data") are the volumes of docker-compose.yml.
USER tscnc
ENV ARTIFACTS_DIR=/artifacts \
    TSCNC_ARTIFACTS_DIR=/artifacts
EXPOSE 8000
CMD ["tscnc", "serve", "--host", "0.0.0.0", "--port", "8000"]
