# syntax=docker/dockerfile:1
#
# sessiongate container image.
#
#   docker build -t sessiongate .
#   docker run --rm -p 8080:8080 -e SESSION_SECRET="$(sessiongate keygen)" \
#       -e UPSTREAM_URL=http://my-backend:3000 sessiongate
#
# Build stage: Debian bookworm with the Rust toolchain. Runtime stage:
# distroless cc (glibc, libgcc, CA certificates; no shell, no package
# manager) running as the unprivileged user 65532. The two stages share the
# same Debian release, so the binary finds the glibc it was linked against.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /build

# make: the jemalloc allocator is built from C sources (gcc is in the image).
# Pinned to bookworm's version, as the base image pins the release.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, in their own layer: build them against placeholder
# sources, so that a change under src/ does not rebuild the whole tree.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources. COPY keeps the files' own modification times, which can
# be older than the placeholder build: touch them so cargo rebuilds the crate.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && ./target/release/sessiongate --version \
    && mkdir -p /out/etc/sessiongate/certs

COPY deploy/docker/gateway.yaml /out/etc/sessiongate/gateway.yaml

FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sessiongate" \
      org.opencontainers.image.description="A reverse-proxy session gateway: real sessions for backends that know nothing about them" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /build/target/release/sessiongate /usr/local/bin/sessiongate
# The configuration and the (empty) certificate directory belong to root and
# are only readable by the gateway: it never writes to its own files.
COPY --from=builder /out/etc/sessiongate /etc/sessiongate

ENV CONFIG=/etc/sessiongate/gateway.yaml
# Relative paths in the configuration (e.g. tls.cert: certs/gateway.crt)
# resolve against the working directory.
WORKDIR /etc/sessiongate

# 8080: the public listener. 9090: the admin listener (/healthz, /readyz,
# /metrics) for probes and Prometheus; never publish it to the internet.
EXPOSE 8080 9090

# `nonroot` in distroless; written as numbers so that Kubernetes'
# runAsNonRoot can verify it without a user database.
USER 65532:65532

# SIGTERM stops accepting and drains requests in flight (limits.drain_timeout).
STOPSIGNAL SIGTERM

# GETs http://<admin.listen>/healthz; needs no shell or curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/sessiongate", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["run"]
