# syntax=docker/dockerfile:1
#
# tokend container image: built with dev dependencies, run with production ones only.
#
#   docker build -t tokend .
#   docker run --rm --read-only -v "$PWD/tokend.yaml:/etc/tokend/config.yaml:ro" tokend
#
# The runtime image is distroless: no shell, no package manager, node as PID 1, UID 65532.
# The endpoint listens on 127.0.0.1:8477 by default (loopback: reachable from containers in the
# same pod only), so nothing is EXPOSEd. See docs/kubernetes.md.

# Build and runtime must agree on the Node major (24, the current LTS, which CI also tests on:
# .ci/run): the compiled output and the production node_modules are copied across stages.
#
# Multi-arch (docker buildx --platform linux/amd64,linux/arm64, .github/workflows/release.yml):
# the two build stages run on the build machine's own platform ($BUILDPLATFORM), since what they
# produce is the same on every platform (JavaScript, and dependencies without native code: install
# scripts are refused and the unit test checks for addons). Only the runtime stage is per
# platform, and it runs nothing, so no emulation is needed.

# ---- production dependencies only (their own stage, so a source change does not re-run it) ----
FROM --platform=$BUILDPLATFORM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency needs an install script; refusing them keeps the build reproducible and safe.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- compile TypeScript with the dev dependencies ----
FROM --platform=$BUILDPLATFORM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime ----
FROM gcr.io/distroless/nodejs24-debian12:nonroot
LABEL org.opencontainers.image.title="tokend" \
      org.opencontainers.image.description="OAuth2/OIDC token sidecar: obtains, refreshes, stores and serves access tokens" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
# package.json is needed at run time: its "type": "module" makes dist/*.js ES modules, and
# `tokend --version` reads it.
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --from=build --chown=0:0 /app/dist ./dist
COPY --chown=0:0 package.json ./
# Files are owned by root: the runtime user can read them but a compromised process cannot
# rewrite its own code. Nothing is written outside mounted volumes (tokens go to the file store's
# volume, Redis or memory), so the container runs with a read-only root filesystem; HOME is the
# distroless nonroot home and nothing uses TMPDIR.
ENV NODE_ENV=production \
    TOKEND_CONFIG=/etc/tokend/config.yaml
# V8 sized for a sidecar (measured in docs/performance.md: bench/footprint.mjs, bench/scale.mjs):
# --max-semi-space-size=1: a 1 MiB young generation instead of Node 24's 16 MiB semi-spaces:
#   -8 MiB RSS for one token, and a lower start-up peak at 1,000+ tokens.
# --max-old-space-size=256: a heap limit 2.5x the live heap of 10,000 tokens (~100 MiB); V8
#   collects harder near it, so 10,000 tokens peak at ~370 MiB instead of ~580 MiB.
# In NODE_OPTIONS rather than the ENTRYPOINT, so that exec probes and hooks running the CLI get
# them too, and a larger configuration can set its own NODE_OPTIONS in the pod spec.
ENV NODE_OPTIONS="--max-semi-space-size=1 --max-old-space-size=256"
# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
# node runs as PID 1 directly (exec form, no shell). PID 1 gets no default signal actions from
# the kernel, but `tokend run` installs its own SIGTERM/SIGINT handlers and stops cleanly, and it
# never spawns children, so there are no zombies to reap: tini / `docker run --init` add nothing.
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/cli.js"]
CMD ["run"]
