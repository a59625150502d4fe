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
# /healthz on the port the daemon listens on, resolved as distilld.settings does (its pydantic-settings model
# config and source order, metrics only): DISTILLD_METRICS__PORT or a JSON DISTILLD_METRICS, in any case, over
# metrics.port of /etc/distilld/distilld.yaml (the file the entrypoint reads: mount yours there), else 9108.
# Not distilld.settings itself: importing distilld loads numba (about 1 s of CPU and 120 MB every 15 s, near the
# 3 s timeout under a CPU limit). metrics.port 0 turns the server off: nothing to ask, healthy while the process
# runs (it is PID 1: the container stops with it). A configuration read from another path (docker run ... run
# --config /elsewhere.yaml) is not seen here: set DISTILLD_METRICS__PORT too
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request, yaml\nfrom pydantic import BaseModel\nfrom pydantic_settings import BaseSettings, SettingsConfigDict\nclass Metrics(BaseModel):\n    port: int = 9108\nclass Settings(BaseSettings):\n    model_config = SettingsConfigDict(env_prefix='DISTILLD_', env_nested_delimiter='__', extra='ignore', nested_model_default_partial_update=True)\n    metrics: Metrics = Metrics()\n    @classmethod\n    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **others):\n        return env_settings, init_settings\ntry:\n    data = yaml.safe_load(open('/etc/distilld/distilld.yaml'))\nexcept Exception:\n    data = None\nmetrics = data.get('metrics') if isinstance(data, dict) else None\nport = Settings(metrics=metrics if isinstance(metrics, dict) else {}).metrics.port\nsys.exit(0 if port == 0 else urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["distilld"]
CMD ["run", "--config", "/etc/distilld/distilld.yaml"]
