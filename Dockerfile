# syntax=docker/dockerfile:1
# tollgate: build with the compiler toolchain, run without it.

# ---- build: compile TypeScript and the better-sqlite3 native module ----
FROM node:20-bookworm-slim AS build
# better-sqlite3 falls back to building from source when its prebuilt binary cannot be fetched.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: our own `prepare` script (tsc) needs src/, copied below so that editing the
# source does not invalidate this dependency layer. The one runtime dependency with an install
# script, better-sqlite3, is then built explicitly.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# ---- runtime: same base image (glibc) as the native module was built against ----
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    TOLLGATE_DB=/var/lib/tollgate/audit.db \
    TOLLGATE_POLICIES=/etc/tollgate/policies
WORKDIR /app
# Code stays owned by root: the service user can read it but not rewrite it.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY web-admin ./web-admin
# The example policies as a default; mount your own folder over it read-only.
COPY policies /etc/tollgate/policies
# The only writable place. Created before VOLUME so a new named volume inherits node's ownership.
RUN mkdir -p /var/lib/tollgate && chown node:node /var/lib/tollgate
VOLUME ["/var/lib/tollgate"]
USER node
EXPOSE 3128 3129
# /healthz stays open when an admin token is set. Assumes the admin port 3129.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:3129/healthz', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]
# The admin UI stays on the container's loopback by default: serve refuses a non-loopback admin
# address without TOLLGATE_ADMIN_TOKEN. docker-compose.yml shows how to expose it with a token.
CMD ["node", "dist/cli.js", "serve", "--listen", "0.0.0.0:3128", "--admin-listen", "127.0.0.1:3129"]
