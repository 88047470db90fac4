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
ENV NODE_ENV=production \
    SIPD_LISTEN=udp:0.0.0.0:5060,tcp:0.0.0.0:5060 \
    SIPD_METRICS=0.0.0.0:9090 \
    SIPD_DB=sqlite:/var/lib/sipd/sipd.sqlite \
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
EXPOSE 5060/udp 5060/tcp 9090/tcp
# /healthz: 200 when the transports are bound and the store answers, 503 otherwise
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:9090/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli/sipd.js"]
