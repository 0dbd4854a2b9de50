# syntax=docker/dockerfile:1
#
# tokend container image: built with dev dependencies, run from a self-contained bundle.
#
#   docker build -t tokend .
#   docker run --rm --read-only -v "$PWD/tokend.yaml:/etc/tokend/config.yaml:ro" tokend
#
# The runtime image is distroless: no shell, no package manager, node as PID 1, UID 65532.
# The endpoint listens on 127.0.0.1:8477 by default (loopback: reachable from containers in the
# same pod only), so nothing is EXPOSEd. See docs/kubernetes.md.

# Build and runtime must agree on the Node major (24, the current LTS, which CI also tests on:
# .ci/run): the bundle is built for the runtime's node.
#
# Multi-arch (docker buildx --platform linux/amd64,linux/arm64, .github/workflows/release.yml):
# the build stage runs on the build machine's own platform ($BUILDPLATFORM), since what it
# produces is the same on every platform (JavaScript: no production dependency has native code
# or an install script, the unit test checks). Only the runtime stage is per platform, and it
# runs nothing, so no emulation is needed.

# ---- compile TypeScript and bundle it with every production dependency (dev dependencies) ----
FROM --platform=$BUILDPLATFORM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency needs an install script; refusing them keeps the build reproducible and safe.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/bundle.mjs ./scripts/
COPY src ./src
# bundle/dist/*.js (minified, node builtins its only imports) and bundle/package.json: the image
# needs no node_modules, and one token's daemon takes ~13 MiB less memory (docs/performance.md).
RUN npm run bundle

# ---- runtime ----
FROM gcr.io/distroless/nodejs24-debian12:nonroot
LABEL org.opencontainers.image.title="tokend" \
      org.opencontainers.image.description="OAuth2/OIDC token sidecar: obtains, refreshes, stores and serves access tokens" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
# The bundle: dist/ (cli.js and the chunks it loads on demand) and package.json, whose
# "type": "module" makes dist/*.js ES modules and whose version `tokend --version` reads.
COPY --from=build --chown=0:0 /app/bundle/ ./
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
#   collects harder near it, so 10,000 tokens peak at ~350 MiB instead of ~580 MiB.
# In NODE_OPTIONS rather than the ENTRYPOINT, so that exec probes and hooks running the CLI get
# them too, and a larger configuration can set its own NODE_OPTIONS in the pod spec.
ENV NODE_OPTIONS="--max-semi-space-size=1 --max-old-space-size=256"
# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
# node runs as PID 1 directly (exec form, no shell). PID 1 gets no default signal actions from
# the kernel, but `tokend run` installs its own SIGTERM/SIGINT handlers and stops cleanly. Its only
# children are `notify.exec` commands, which node reaps: tini / `docker run --init` add nothing
# unless such a command leaves processes of its own behind.
# More V8 flags, which node refuses in NODE_OPTIONS, so they are here (and in the exec probes of
# k8s/components): memory over speed for a sidecar that holds a few tokens, while code that gets
# really hot (a busy endpoint, thousands of tokens) is still optimized in the end.
# --no-maglev --invocation-count-for-turbofan=100000 --invocation-count-for-osr=100000: no
#   mid-tier compiler, and TurboFan only for a function called 100,000 times, where V8 starts
#   Maglev at 400 calls and TurboFan at 3,000. Starting a few tokens never gets there, so the
#   daemon does not pay for optimizing compilers it does not need: -3 MiB for one token, -9 for
#   ten (at 10,000 calls ten tokens' start-up already reached TurboFan). The price: about twice
#   the CPU per token request until the endpoint's code has been called 100,000 times.
# --expose-gc: `tokend run` collects start-up's garbage once every token's first grant is done
#   (src/util/startup-gc.ts), so it is at its steady size when it first reports ready, not ten
#   seconds later: -2 to -3 MiB at ready. NODE_OPTIONS would take this one; it is here so that a
#   pod setting its own NODE_OPTIONS (which replaces the image's) keeps it.
# Measured in docs/performance.md ("The image's V8 flags"). A configuration that wants V8's own
# defaults sets the container's command to ["/nodejs/bin/node", "--expose-gc", "/app/dist/cli.js"].
ENTRYPOINT ["/nodejs/bin/node", "--no-maglev", "--invocation-count-for-turbofan=100000", "--invocation-count-for-osr=100000", "--expose-gc", "/app/dist/cli.js"]
CMD ["run"]
