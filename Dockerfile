# Multi-stage build: compile with the Rust toolchain, run on a small Debian
# base as an unprivileged user. Mount your gateway.yaml and certificates.
#
#   docker build -t pushgate .
#   docker run -p 8443:8443 -v $PWD/gateway.yaml:/etc/pushgate/gateway.yaml:ro \
#              -v $PWD/certs:/etc/pushgate/certs pushgate

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The browser client, dashboard and demo page are embedded at compile time.
COPY assets ./assets
RUN cargo build --release --locked && strip target/release/pushgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/pushgate --create-home pushgate \
    && mkdir -p /etc/pushgate/certs && chown -R pushgate /etc/pushgate/certs
COPY --from=build /src/target/release/pushgate /usr/local/bin/pushgate
COPY gateway.yaml /etc/pushgate/gateway.yaml
USER pushgate
WORKDIR /etc/pushgate
EXPOSE 8443 9090
# The admin listener binds loopback by default; publish from inside the
# container's network namespace, or set listen.admin and auth.admin_keys.
ENTRYPOINT ["/usr/local/bin/pushgate"]
CMD ["run", "-c", "/etc/pushgate/gateway.yaml"]
