# Minimal image for the library and CLI; the deployment issue hardens it
# (daemon entrypoint, config path, healthcheck, hadolint in make test).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY distilld ./distilld
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 distilld
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENTRYPOINT ["distilld"]
CMD ["--help"]
