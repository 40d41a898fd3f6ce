# The DataAgent Server image (docker-compose.yml builds it). Build: docker build -t dataagent-server .
FROM python:3.11-slim AS build
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATAAGENT_HOST=0.0.0.0 \
    DATAAGENT_PORT=8000
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 10001 dataagent
USER dataagent
WORKDIR /home/dataagent
EXPOSE 8000
# the port the server listens on: DATAAGENT_PORT, as set for the container (docker run -e DATAAGENT_PORT=9000)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v1/health' % os.environ.get('DATAAGENT_PORT', '8000'), timeout=2)"]
# dataagent-server checks the store first: MySQL unreachable at start is one clear line and exit code 1
CMD ["dataagent-server"]
