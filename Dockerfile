# syntax=docker/dockerfile:1
#
# clerkgate's image: the release binary on distroless (no shell, no package manager), run as
# 65532:65532, writing only /var/lib/clerkgate.
#
#   docker build -t clerkgate:0.1.0 .
#
# Base images are pinned by tag and digest. The digests are those seen in several public build
# files for these tags; they could not be checked against the registries from where this file
# was written. Check or refresh them with
#   docker buildx imagetools inspect rust:1.95.0-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
# and keep the tag in front of the digest, so that a reader can tell what it is.

# The toolchain the project is built and tested with (1.95.0), on Debian 12 like the runtime
# below, so the binary links against the same glibc.
FROM rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe: the dependency graph alone (manifests, lock file, a skeleton of the targets). It
# changes only when dependencies do, so the layer that builds them is reused across source edits.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# Dependencies first (cached while recipe.json is unchanged), then clerkgate itself, in the same
# directory and profile (the release profile: fat LTO, one codegen unit).
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin clerkgate --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin clerkgate \
    && install -D -m 0755 target/release/clerkgate /out/clerkgate \
    && install -d -m 0700 /out/state

# Runtime: glibc, libgcc, CA certificates and tzdata; no shell, so health checks go through the
# binary itself (`clerkgate health --ready`).
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=builder /out/clerkgate /usr/local/bin/clerkgate
# The state directory, owned by the user that runs the gateway. Kubernetes mounts an emptyDir
# here (the root filesystem is read-only); a plain `docker run` writes into the container.
COPY --from=builder --chown=65532:65532 /out/state /var/lib/clerkgate
# The CLI inside the container (`clerkgate status`, `clerkgate mode bypass ...`) reads the admin
# address and token from the same config the gateway runs with.
ENV CLERKGATE_CONFIG=/etc/clerkgate/clerkgate.toml
# Numeric, so that Kubernetes can check runAsNonRoot without a passwd lookup: distroless "nonroot".
USER 65532:65532
# server.listen (data plane) and server.health_listen (probes, metrics) of config/. The admin
# API stays on loopback and is not exposed.
EXPOSE 8080 9902
ENTRYPOINT ["/usr/local/bin/clerkgate"]
CMD ["run", "--config", "/etc/clerkgate/clerkgate.toml"]
# No HEALTHCHECK: Kubernetes ignores it and uses its probes (deploy/k8s/); deploy/compose.yaml
# declares one through `clerkgate health --ready`.
