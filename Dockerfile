# zhizao central services (ingest, KPI engine, API) - used by deploy/compose/compose.yaml.
# Multi-stage: the build stage compiles the wheel (with the C line-protocol kernel); the runtime
# stage has no compiler, runs as an unprivileged user and reads its config from /etc/zhizao.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY zhizao zhizao
COPY ingest ingest
COPY gateway gateway
COPY analytics analytics
COPY api api
COPY simulator simulator
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[ingest,analytics,api]"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --home-dir /var/lib/zhizao zhizao \
    && install -d -o zhizao -g zhizao -m 0750 /var/lib/zhizao /run/zhizao
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "zhizao[ingest,analytics,api]" \
    && rm -rf /wheels \
    && python -c "import ingest._lpkernel"
COPY deploy/docker-entrypoint.sh /usr/local/bin/zhizao-entrypoint
USER zhizao
WORKDIR /var/lib/zhizao
ENTRYPOINT ["/usr/local/bin/zhizao-entrypoint"]
CMD ["--help"]
