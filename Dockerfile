# distilld: the Kafka daemon. Multi-stage: wheels are built in the first stage, the
# final image has the runtime only (no compilers), runs as a non-root user, reads
# /etc/distilld/distilld.yaml (mount your own; DISTILLD_* variables override it) and
# serves /metrics, /healthz and /readyz on 9108.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY distilld ./distilld
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DISTILLD_METRICS__HOST=0.0.0.0 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin distilld
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/distilld.yaml /etc/distilld/distilld.yaml
USER 10001
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["distilld"]
CMD ["run", "--config", "/etc/distilld/distilld.yaml"]
