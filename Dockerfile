# syntax=docker/dockerfile:1
# One image with both binaries: `skyvault` (every data-plane role and the Jobs) and
# `skyvault-operator`. The operator's chart runs /usr/local/bin/skyvault-operator; the
# SkyVault Pods run the default entrypoint with the role as argument.
#
#   docker build -t skyvault:dev .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole workspace: cargo needs every member's manifest even to build two packages.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p skyvault -p skyvault-operator \
 && mkdir -p /out \
 && cp target/release/skyvault target/release/skyvault-operator /out/

# distroless/cc: glibc + libgcc + CA certificates, no shell; "nonroot" is uid/gid 65532,
# the uid the operator's Pod security context expects. Nothing is written except /tmp
# (an emptyDir in the Pods), so the root filesystem can be read-only.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/skyvault /out/skyvault-operator /usr/local/bin/
USER 65532:65532
ENV SKYVAULT_LOG_FORMAT=json
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/skyvault"]
