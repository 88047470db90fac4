# syntax=docker/dockerfile:1
# sipd container image. Multi-stage: build (compile TypeScript, native better-sqlite3), then a slim runtime.
# No Docker engine runs on the development machines: this file is kept correct by reading (see README).

# ---- build stage -------------------------------------------------------------
FROM node:20-bookworm AS build
WORKDIR /app
# toolchain for better-sqlite3 if no prebuilt binary matches
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# ---- runtime stage -----------------------------------------------------------
FROM node:20-bookworm-slim AS runtime
# The HTTP endpoint listens on 0.0.0.0:9090 so that Prometheus and the healthcheck reach it. On a
# non-loopback address sipd turns the admin verbs (DELETE /location, used by `sipctl ul rm`) OFF
# unless a token is set explicitly (SIPD_ADMIN_TOKEN or admin.token): as shipped, port 9090 serves
# only /metrics and /healthz. To use `sipctl ul rm` against the running server, start the
# container with SIPD_ADMIN_TOKEN (a secret, 16+ characters; `docker exec` inherits it):
#   docker exec CONTAINER node dist/cli/sipctl.js ul rm alice@example.com
# Without it, `sipctl ul rm` still removes from the database and says the server was not told.
# SIPD_STATE_DIR: generated state (auth.secret, the nonce key, mode 0600) on the data volume, so
# that nonces stay valid across container restarts.
# MALLOC_MMAP_THRESHOLD_: glibc keeps allocations >= 128 KiB in mmap (given back when freed) instead of
# raising the threshold after the first free and keeping them in its heap (bench/RSS.md)
ENV NODE_ENV=production \
    MALLOC_MMAP_THRESHOLD_=131072 \
    SIPD_LISTEN=udp:0.0.0.0:5060,tcp:0.0.0.0:5060 \
    SIPD_METRICS=0.0.0.0:9090 \
    SIPD_DB=sqlite:/var/lib/sipd/sipd.sqlite \
    SIPD_STATE_DIR=/var/lib/sipd \
    SIPD_LOG_LEVEL=info
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
COPY sql ./sql
# non-root user owning only the data directory
RUN groupadd --system sipd && useradd --system --gid sipd --home /var/lib/sipd sipd \
    && mkdir -p /var/lib/sipd && chown sipd:sipd /var/lib/sipd
USER sipd
VOLUME ["/var/lib/sipd"]
# 9090: /metrics and /healthz (admin verbs off without SIPD_ADMIN_TOKEN, see above)
# 5061 (TLS), 8080 (WebSocket) and 4443 (WebSocket over TLS) are served once listed, e.g.
#   -e SIPD_LISTEN=udp:0.0.0.0:5060,tcp:0.0.0.0:5060,tls:0.0.0.0:5061,ws:0.0.0.0:8080,wss:0.0.0.0:4443
#   -e SIPD_TLS_CERT=/certs/fullchain.pem -e SIPD_TLS_KEY=/certs/privkey.pem -v /etc/sipd/certs:/certs:ro
# (tls and wss need the certificate; a replaced certificate file is picked up without a restart)
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp 4443/tcp 9090/tcp
# /healthz: 200 when the transports are bound and the store answers, 503 otherwise
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:9090/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli/sipd.js"]
