# syntax=docker/dockerfile:1
# One image for every llmwatch service; compose picks the service with its command
# (`llmwatch serve ingest|aggregator|stream|metrics`). Slim, non-root, no compiler at run time.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/llmwatch
# Dependencies first (pinned in pyproject.toml), so a code change does not re-download them.
COPY pyproject.toml README.md ./
RUN mkdir -p shared services \
    && touch shared/__init__.py services/__init__.py \
    && /opt/llmwatch/bin/pip install . \
    && /opt/llmwatch/bin/pip uninstall -y llmwatch
COPY shared ./shared
COPY services ./services
RUN /opt/llmwatch/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 llmwatch \
    && useradd --system --uid 10001 --gid llmwatch --home-dir /app --shell /usr/sbin/nologin llmwatch \
    && mkdir -p /app/data && chown llmwatch:llmwatch /app/data
COPY --from=build /opt/llmwatch /opt/llmwatch
ENV PATH=/opt/llmwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMWATCH_HOST=0.0.0.0 \
    LLMWATCH_PORT=8000 \
    LLMWATCH_DATA_DIR=/app/data
WORKDIR /app
USER llmwatch:llmwatch
EXPOSE 8000
# Every service serves /readyz on its port (aggregator and metrics too): Redis reachable and the
# service's own checks pass. urllib raises on a non-2xx answer, so the exit code says it all.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('LLMWATCH_PORT', '8000'), timeout=2)"]
# Without a command: everything in one container with its own Redis (`docker run -p 3000:8000`).
CMD ["llmwatch", "up"]
