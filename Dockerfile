# syntax=docker/dockerfile:1
# The `spillway` binary in a small Debian image, running as a non-root user.
#
#   docker build -t spillway .
#   docker run --init -p 7070:7070 -v spillway-data:/var/lib/spillway spillway          # server
#   docker run --init -e SPILLWAY_SERVER=http://… -e SPILLWAY_TOKEN=… spillway worker   # worker
#
# The image has tini as PID 1, so SIGTERM reaches spillway (a worker then drains and hands its
# leases back as preempted) and zombies of task commands are reaped; `--init` is not needed
# but does no harm. No HEALTHCHECK: Kubernetes probes /healthz and /readyz (deploy/helm).
# Checked offline by scripts/check-deploy (no Docker engine is needed for that).

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# Dependencies first, in their own layer: copy only the manifests, build the whole dependency
# graph against empty stand-in crates, so editing Spillway's sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates/autoscale/Cargo.toml crates/autoscale/
COPY crates/blob/Cargo.toml crates/blob/
COPY crates/cli/Cargo.toml crates/cli/
COPY crates/client/Cargo.toml crates/client/
COPY crates/compute-engine/Cargo.toml crates/compute-engine/
COPY crates/core/Cargo.toml crates/core/
COPY crates/executor/Cargo.toml crates/executor/
COPY crates/gcp-auth/Cargo.toml crates/gcp-auth/
COPY crates/kubernetes/Cargo.toml crates/kubernetes/
COPY crates/pubsub/Cargo.toml crates/pubsub/
COPY crates/server/Cargo.toml crates/server/
COPY crates/store/Cargo.toml crates/store/
COPY crates/testkit/Cargo.toml crates/testkit/
COPY crates/worker/Cargo.toml crates/worker/
RUN set -eu; \
    for dir in crates/*/; do mkdir -p "$dir/src" && touch "$dir/src/lib.rs"; done; \
    rm crates/cli/src/lib.rs && echo 'fn main() {}' > crates/cli/src/main.rs; \
    cargo build --release --locked -p spillway; \
    rm -rf crates
# Now the real sources. Touch them so cargo never mistakes the stand-ins' build for theirs
# (COPY keeps the build context's modification times, which may be older).
COPY crates crates
COPY spillway.example.toml ./
RUN find crates -type f -exec touch {} + \
    && cargo build --release --locked -p spillway \
    && strip target/release/spillway \
    && target/release/spillway --version

FROM debian:bookworm-slim
# ca-certificates: TLS to PostgreSQL, S3, GCS and the Kubernetes/Compute Engine APIs;
# tini: PID 1 that forwards signals and reaps task processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 spillway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/spillway --shell /usr/sbin/nologin spillway \
    && mkdir -p /var/lib/spillway \
    && chown 10001:10001 /var/lib/spillway
COPY --from=builder /src/target/release/spillway /usr/local/bin/spillway
# SQLite database, local blobs and the admin token; mount a volume here.
ENV SPILLWAY_DATA_DIR=/var/lib/spillway \
    SPILLWAY_LISTEN=0.0.0.0:7070
WORKDIR /var/lib/spillway
VOLUME ["/var/lib/spillway"]
USER 10001:10001
EXPOSE 7070
ENTRYPOINT ["/usr/bin/tini", "--", "spillway"]
CMD ["server"]
