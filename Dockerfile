# marserve images. Two targets from one file:
#   docker build --target worker   -t marserve/worker .     # serves models (torch CPU by default)
#   docker build --target operator -t marserve/operator .   # the Kubernetes operator (no torch)
# GPU builds pick torch's wheel index, for example:
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128   (NVIDIA CUDA 12.8)
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/xpu     (Intel XPU)
# Python packages come from pyproject.toml's extras, so the image installs what the tests ran.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Shared by every stage: no bytecode written at run time (the root file system is read-only in
# pods), unbuffered logs, no pip cache left in layers.
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project's source, the only files the install steps read (.dockerignore keeps the rest out).
FROM base AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY operator ./operator

# torch goes in first, at the exact version the Makefile pins, from the chosen wheel index: a bare
# requirement would pull a multi-GB CUDA build onto CPU nodes.
# torchvision, which most image archives import, comes in the same command from the same index, at
# the release that belongs with TORCH_VERSION (PyTorch's table: torch 2.13 -> torchvision 0.28,
# 2.14 -> 0.29); pyproject.toml's `vision` extra pins the same release, and tests check the two
# agree. Each torchvision release requires its own torch, so a build arg that changes one without
# the other fails here rather than giving an image whose torchvision cannot load.
# --build-arg TORCHVISION_VERSION= (empty) leaves torchvision out of a slim image.
FROM base AS worker-build
ARG TORCH_VERSION=2.13.0
ARG TORCHVISION_VERSION=0.28.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/marserve \
    && /opt/marserve/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
        ${TORCHVISION_VERSION:+"torchvision==${TORCHVISION_VERSION}"}
COPY --from=source /src /src
RUN /opt/marserve/bin/pip install --no-cache-dir "/src[worker,cloud]"

FROM base AS operator-build
COPY --from=source /src /src
RUN python -m venv /opt/marserve \
    && /opt/marserve/bin/pip install --no-cache-dir "/src[operator]"

# Final stages: the virtual environment and a non-root user, nothing else (no compilers, no source).
FROM base AS runtime
RUN groupadd --gid 1000 marserve \
    && useradd --uid 1000 --gid 1000 --no-log-init --create-home --home-dir /home/marserve \
        --shell /usr/sbin/nologin marserve
ENV PATH=/opt/marserve/bin:${PATH} \
    HOME=/home/marserve
WORKDIR /home/marserve

FROM runtime AS operator
COPY --from=operator-build /opt/marserve /opt/marserve
USER 1000:1000
# kopf's liveness endpoint.
EXPOSE 8080
ENTRYPOINT ["marserve-operator"]

FROM runtime AS worker
COPY --from=worker-build /opt/marserve /opt/marserve
# Models are extracted here by the init container (`marserve extract`) or mounted from a volume.
RUN mkdir -p /mnt/models && chown 1000:1000 /mnt/models
ENV MARSERVE_HOST=0.0.0.0 \
    MARSERVE_MODEL_STORE=/mnt/models \
    MARSERVE_MODELS=all
USER 1000:1000
# Inference, management and metrics, as TorchServe; TorchServe's gRPC inference and management.
EXPOSE 8080 8081 8082 7070 7071
ENTRYPOINT ["marserve"]
CMD ["serve"]
