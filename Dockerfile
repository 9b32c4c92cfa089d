# One image for the hub, the gateway and the simulator: `metalldaten <command>`.
FROM python:3.11-slim-bookworm
WORKDIR /opt/metalldaten
COPY pyproject.toml README.md ./
COPY wire ./wire
COPY core ./core
COPY gateway ./gateway
COPY storage ./storage
COPY api ./api
COPY metalldaten ./metalldaten
COPY broker_config ./broker_config
RUN pip install --no-cache-dir ".[hub]" && useradd --system --home /var/lib/metalldaten metalldaten \
    && mkdir -p /var/lib/metalldaten && chown metalldaten /var/lib/metalldaten
USER metalldaten
ENTRYPOINT ["metalldaten"]
