# The suite on a GPU box: CUDA PyTorch from the pinned requirements, headless MuJoCo, `make` as the entry point.
#
#   docker build -t kan-cql .
#   docker run --rm --gpus all -v d4rl:/data/d4rl -v "$PWD/results:/app/results" kan-cql reproduce
#   docker run --rm -v "$PWD/results:/app/results" -v "$PWD/tables:/app/tables" kan-cql tables GRID=paper
#
# Base image: the official Python image at the exact Python and Debian releases the suite is developed on (3.11 on
# bookworm). No CUDA base image is needed: on Linux x86_64 the PyPI wheel of torch 2.13.0 is the CUDA 13.0 build
# and brings the CUDA runtime, cuBLAS, cuDNN and NCCL as nvidia-*/cuda-* wheels; all it takes from the host is the
# NVIDIA driver (R580 or newer for CUDA 13), which `docker run --gpus all` mounts in. An nvidia/cuda base would
# add a second copy of those libraries (gigabytes), and pytorch/pytorch would bring conda's Python and its own
# torch build instead of the requirements.txt pin. For a fully immutable base, pin the digest as well
# (FROM python:3.11.14-slim-bookworm@sha256:<digest>, from `docker buildx imagetools inspect`); it was not added
# here because it cannot be looked up without registry access.
FROM python:3.11.14-slim-bookworm

# Must equal the torch pin in requirements.txt (tests/test_docker.py checks); the build fails unless pip installed
# exactly this version as a CUDA build.
ARG TORCH_VERSION=2.13.0

# MUJOCO_GL=disable: the suite steps MuJoCo physics and never renders, so mujoco loads no OpenGL backend and the
# image needs no libGL/EGL/OSMesa (egl would only matter for offscreen rendering, with libegl1 and the driver's
# `graphics` capability). Gymnasium's MuJoCo envs still import glfw and imageio: glfw's wheel bundles its library,
# imageio is in requirements.txt.
# NVIDIA_DRIVER_CAPABILITIES: CUDA plus NVML/nvidia-smi, through which Ray counts the GPUs.
# MPLCONFIGDIR: a writable matplotlib cache for any user id (e.g. `docker run --user "$(id -u):$(id -g)"`).
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=disable \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    MPLCONFIGDIR=/tmp/matplotlib

# make is the entry point. Nothing is compiled (every requirement is a wheel except rliable, a pure-Python sdist),
# so no compiler or headers enter the image and a separate build stage would gain nothing.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 bench \
    && useradd --uid 1000 --gid bench --create-home --no-log-init --shell /bin/bash bench

WORKDIR /app

# Dependencies first, in their own layer: the several GB of CUDA wheels are downloaded again only when
# requirements.txt changes. The venv sits where the Makefile expects it (.venv in the repo root), so every make
# target runs in it. It stays root-owned: the study cannot change its own environment at run time.
COPY requirements.txt ./
RUN python -m venv .venv \
    && .venv/bin/python -m pip install --no-cache-dir pip==26.3 \
    && .venv/bin/python -m pip install --no-cache-dir -r requirements.txt \
    && .venv/bin/python -c 'import os, torch; want = os.environ["TORCH_VERSION"]; \
        got = torch.__version__.split("+")[0]; \
        assert got == want and torch.version.cuda, f"torch {torch.__version__} is not the CUDA build of {want}"'

# The code (.dockerignore keeps the host's .venv, data, results and caches out), installed as the Makefile's setup
# target does. The stamp is touched last, after every COPY, so it is newer than requirements.txt and
# pyproject.toml: make sees .venv as up to date and `make reproduce` never reinstalls.
COPY --chown=bench:bench . .
RUN .venv/bin/python -m pip install --no-cache-dir --no-deps --no-build-isolation -e . \
    && mkdir -p results tables figures /data/d4rl /data/local \
    && chown bench:bench /app results tables figures /data/d4rl /data/local \
    && touch .venv/.installed

# D4RL files are cached in /data/d4rl (d4rl's D4RL_DATASET_DIR), the suite's own datasets in /data/local; records,
# tables and figures are written to the three output folders. Mount all of them so they outlive the container.
# The image has no .git: records take the commit from BENCH_GIT_COMMIT, set at build time with
# `docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) ...`.
ARG GIT_COMMIT=""
ENV PATH=/app/.venv/bin:$PATH \
    BENCH_GIT_COMMIT=$GIT_COMMIT \
    VIRTUAL_ENV=/app/.venv \
    D4RL_DATASET_DIR=/data/d4rl \
    BENCH_LOCAL_DATASET_DIR=/data/local
VOLUME ["/data/d4rl", "/data/local", "/app/results", "/app/tables", "/app/figures"]

# By number, so hosts and Kubernetes (runAsNonRoot) can check it without the image's /etc/passwd.
USER 1000:1000

# `docker run IMAGE reproduce`, `docker run IMAGE tables GRID=paper`, `docker run IMAGE test`: any make target.
ENTRYPOINT ["make"]
CMD ["reproduce"]
