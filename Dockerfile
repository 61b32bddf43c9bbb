# syntax=docker/dockerfile:1
# kontext-bot: `docker build -t kontext-bot .` then see docs/operations.md.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml setup.py README.md ./
COPY bot ./bot
COPY adapters ./adapters
# Every dependency ships as a wheel for CPython 3.11 on Linux: no compiler is needed,
# and nothing of this stage but the virtual environment reaches the final image.
RUN /opt/venv/bin/pip install ".[postgres,discord,slack]"

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KONTEXT_STORAGE__URL=sqlite:////data/kontext.db \
    KONTEXT_STORAGE__DATA_DIR=/data/files \
    KONTEXT_OPS__ENABLED=true \
    KONTEXT_OPS__HOST=0.0.0.0 \
    KONTEXT_OPS__PORT=9090 \
    KONTEXT_LOG__FORMAT=json
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin kontext \
    && mkdir -p /data /etc/kontext \
    && chown kontext:kontext /data
COPY --from=build /opt/venv /opt/venv
USER kontext
# The config file is optional: mount one at /etc/kontext/config.toml, or give every
# setting (secrets above all) as KONTEXT_<SECTION>__<KEY> environment variables.
WORKDIR /etc/kontext
VOLUME ["/data"]
EXPOSE 9090 3000 8090
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["kontext-bot", "healthcheck"]
STOPSIGNAL SIGTERM
CMD ["kontext-bot", "run"]
