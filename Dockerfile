# Images for the gateway and the reference engine (the Helm chart's and
# kustomize base's defaults):
#   docker build --target gateway -t ghcr.io/velostream/velo-gateway:0.1.0 .
#   docker build --target engine  -t ghcr.io/velostream/velo-engine:0.1.0 .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The production profile: every crate fully optimised (--release trades some
# speed for a shorter build).
RUN cargo build --profile production --locked -p velo-gateway -p velo-engine \
 && strip target/production/velo-gateway target/production/velo-engine

# Slim Debian rather than distroless: the chart's preStop hook runs /bin/sleep.
FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
USER 65532:65532

FROM runtime AS engine
COPY --from=build /src/target/production/velo-engine /usr/local/bin/velo-engine
ENTRYPOINT ["/usr/local/bin/velo-engine"]

FROM runtime AS gateway
COPY --from=build /src/target/production/velo-gateway /usr/local/bin/velo-gateway
ENTRYPOINT ["/usr/local/bin/velo-gateway"]
