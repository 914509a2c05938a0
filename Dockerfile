# mailsync watch in a container. Build and run (the config and the store live in two volumes):
#   docker build -t mailsync .
#   docker run -d --name mailsync -v mailsync-config:/config -v mailsync-data:/data \
#       -e WORK_IMAP_PASSWORD=... -p 127.0.0.1:9108:9108 mailsync
# Put the config at /config/mailsync/config.toml (mode 0600, owned by uid 1000); the SQLite store is
# created at /data/mailsync/mailsync.db. `docker stop` sends SIGTERM: the daemon finishes the step
# in progress and exits 0 within 5 s (docker's default 10 s grace period is enough).
# Other commands: docker run --rm -v ... mailsync check   (or status, sync, ...)
FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md /src/
COPY mailsync /src/mailsync
RUN pip install "/src[postgres]" && rm -rf /src \
 && useradd --uid 1000 --create-home --shell /usr/sbin/nologin mailsync \
 && install -d -o mailsync -g mailsync -m 0700 /config /data
USER mailsync
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
VOLUME ["/config", "/data"]
EXPOSE 9108
STOPSIGNAL SIGTERM
ENTRYPOINT ["mailsync", "--log-format", "json"]
CMD ["watch", "--metrics-port", "9108", "--metrics-addr", "0.0.0.0"]
