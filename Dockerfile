# Tidings: one image for the API (`tidings serve`) and the workers (`tidings worker`).
# Build stage: the project and its dependencies into a virtualenv; the runtime stage copies only that.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY channels channels
COPY compliance compliance
COPY templates templates
RUN python -m venv /opt/tidings \
 && /opt/tidings/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/tidings tidings
COPY --from=build /opt/tidings /opt/tidings
ENV PATH=/opt/tidings/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TIDINGS_LOG_FORMAT=json \
    TIDINGS_AUDIT_URL=sqlite:////var/lib/tidings/audit.sqlite3
USER tidings
WORKDIR /var/lib/tidings
EXPOSE 8080 9101
# The API answers /healthz; a worker's metrics port answers /metrics (TIDINGS_HEALTH_URL says which).
ENV TIDINGS_HEALTH_URL=http://127.0.0.1:8080/healthz
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['TIDINGS_HEALTH_URL'], timeout=2)"]
ENTRYPOINT ["tidings"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
