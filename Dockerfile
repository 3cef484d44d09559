# syntax=docker/dockerfile:1
# One image for every kvix service; the container's command picks one:
#   kvix-epp | kvix-kv-events | kvix-indexer | kvix-latency-predictor | vllm-sim | kvix
# Build: docker build -t kvix:dev .      (the Helm chart and Kustomize bases run it as uid 10001,
# read-only root filesystem, /tmp an emptyDir)

ARG NODE_VERSION=24

# --- build: full install (dev dependencies, native addons), then compile every workspace.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
# Native addons (zeromq, tokenizers) ship prebuilt binaries; these are for a source build fallback.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json turbo.json tsconfig.base.json tsconfig.json ./
COPY packages ./packages
COPY services ./services
COPY proto ./proto
COPY bench ./bench
COPY test ./test
RUN npm ci --no-audit --no-fund
RUN npx turbo run build --output-logs=errors-only \
 && npm prune --omit=dev --no-audit --no-fund \
 && find packages services proto -name '*.tsbuildinfo' -delete \
 && rm -rf .turbo

# --- runtime: Node LTS, production dependencies and compiled output only, not root.
FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production \
    PATH=/app/node_modules/.bin:$PATH
WORKDIR /app
COPY --from=build --chown=0:0 /src /app
# A fixed numeric user (Kubernetes' runAsNonRoot checks the number); nothing in /app is writable by it.
RUN groupadd --system --gid 10001 kvix && useradd --system --uid 10001 --gid kvix --no-create-home --home-dir /nonexistent kvix
USER 10001:10001
EXPOSE 8080 9002 9090 9100 8081 50051 8000
ENTRYPOINT []
CMD ["kvix-epp"]
