# The unthrottle image: the operator (`unthrottle run -A`, the default command, as a
# non-root user) and the burst node agent (`unthrottle agent`: manifests/agent/daemonset.yaml
# runs the same image with that command, as uid 0 without capabilities, to write cgroup files).
#
#   docker build -t ghcr.io/unthrottle/unthrottle:0.1.0 .
#
# Two stages on the same pinned base (the Python version pyproject.toml requires, 3.11):
#   builder  builds the unthrottle wheel from this repository and the wheels of its
#            dependencies (pip wheel: everything fetched here, once);
#   final    pip-installs the built wheel offline, exactly as README's
#            `pip install .` would, then drops to uid 10001.
# The image tag and manifests/deployment.yaml follow pyproject.toml's version;
# tests/unit/test_dockerfile.py checks this file statically (there is no docker engine in
# the development sandbox).

FROM python:3.11.9-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the build needs (.dockerignore keeps the context to these too).
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
RUN pip wheel --wheel-dir /wheels .


FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid/gid (manifests/deployment.yaml runs as 10001 with runAsNonRoot).
# Home is /tmp: the only writable path when the root filesystem is mounted read-only.
RUN groupadd --system --gid 10001 unthrottle \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin unthrottle

# Install as root into the system site-packages, from the builder's wheels only.
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links=/wheels unthrottle \
 && rm -rf /wheels

USER 10001:10001

# 8080: liveness (/healthz); 9100: Prometheus metrics (/metrics).
EXPOSE 8080 9100

ENTRYPOINT ["unthrottle"]
CMD ["run", "-A"]
