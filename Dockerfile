# syntax=docker/dockerfile:1
# The image the CronJobs (`pullctl run <source>`) and `pullctl serve` run:
#   docker build -t ghcr.io/acme/pullctl:1.4.0 .
# Two stages: the build stage makes a virtualenv with pullctl and its dependencies; the final stage copies only
# that virtualenv onto a fresh slim Python, so no compiler, pip cache or build backend ships.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/pullctl
WORKDIR /src
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p pullctl && touch pullctl/__init__.py \
 && /opt/pullctl/bin/pip install . \
 && /opt/pullctl/bin/pip uninstall -y pullctl
COPY pullctl ./pullctl
RUN /opt/pullctl/bin/pip install --no-deps . \
 && /opt/pullctl/bin/pip uninstall -y pip setuptools wheel \
 && /opt/pullctl/bin/python -m compileall -q /opt/pullctl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="pullctl" \
      org.opencontainers.image.description="Scheduled pull ingestion from HTTP/REST JSON APIs" \
      org.opencontainers.image.licenses="Apache-2.0"
# The uid/gid the rendered pods run as (runAsUser/runAsGroup 10001); no login shell, no home to write to.
RUN groupadd --system --gid 10001 pullctl \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pullctl
COPY --from=build /opt/pullctl /opt/pullctl
ENV PATH=/opt/pullctl/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PULLCTL_LOG_FORMAT=json \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["pullctl"]
CMD ["--help"]
