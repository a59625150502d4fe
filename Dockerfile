# distilld: the Kafka daemon. Multi-stage: wheels are built in the first stage, the
# final image has the runtime only (no compilers), runs as a non-root user, reads
# /etc/distilld/distilld.yaml (mount your own; DISTILLD_* variables override it) and
# serves /metrics, /healthz and /readyz on 9108.
#
# Stopping: on SIGTERM distilld flushes, snapshots and commits within
# processing.shutdown_timeout_s (30 s by default), but `docker stop` sends SIGKILL after 10 s.
# Give it the deadline plus a margin: `docker run --stop-timeout 45 ...` (or `docker stop -t 45`,
# compose's stop_grace_period: 45s); Kubernetes: terminationGracePeriodSeconds, which the chart sets.
#
# The base image is a tag, which moves with every Python patch release. For reproducible builds pin
# it by digest, in both stages: FROM python:3.11-slim@sha256:<digest>, the digest from
# `docker buildx imagetools inspect python:3.11-slim` (and a dependency bot to bump it).
FROM python:3.11-slim AS build
WORKDIR /src
# The dependencies' wheels first, from pyproject.toml alone: this layer is rebuilt only when the
# dependencies change, not on every change to distilld's code.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip wheel --no-cache-dir --wheel-dir /wheels -r /tmp/requirements.txt
# then distilld's own wheel, without its dependencies (they are built above)
COPY README.md ./
COPY distilld ./distilld
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DISTILLD_METRICS__HOST=0.0.0.0 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin distilld
COPY --from=build /wheels /wheels
# --no-index: everything comes from the wheels built above, nothing from the network
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
COPY config/distilld.yaml /etc/distilld/distilld.yaml
USER 10001
EXPOSE 9108
# the port the daemon listens on: DISTILLD_METRICS__PORT when given (docker run -e), else metrics.port of
# /etc/distilld/distilld.yaml (the file the entrypoint reads: mount yours there), else 9108. A configuration
# read from another path (docker run ... run --config /elsewhere.yaml) is not seen here: set the variable too
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request, yaml\nport = os.environ.get('DISTILLD_METRICS__PORT')\ntry:\n    port = port or yaml.safe_load(open('/etc/distilld/distilld.yaml'))['metrics']['port']\nexcept Exception:\n    pass\nport = port or '9108'\nsys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["distilld"]
CMD ["run", "--config", "/etc/distilld/distilld.yaml"]
