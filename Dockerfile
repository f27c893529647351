# syntax=docker/dockerfile:1
#
# The dom-router server image: the release binary (with OpenTelemetry export and the HiGHS
# solver, features `otel` and `highs`) on Debian slim, running as uid/gid 10001, with the demo
# config in /etc/dom-router/config.
#
#   docker build -t dom-router:0.1.0 .
#   docker run --rm -p 50051:50051 -p 50052:50052 -p 9464:9464 dom-router:0.1.0
#
# The Helm chart in helm/dom-router mounts its own config over /etc/dom-router/config.

FROM rust:1-bookworm AS builder

# HiGHS, the MIP solver of the `highs` feature, is built from source with cmake and a C++
# compiler, and its bindings are generated with libclang. With it, a network of any size may
# use `sourcing.solver = "auto"` or "highs". protoc needs nothing: the build uses a vendored one.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang libclang-dev g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when the manifest, the lock
# file, the protos or the bench and example sources (which the manifest names) change, not on
# every change to the server's code. The server's own sources are empty stand-ins here.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY benches benches
COPY solver-models/export.rs solver-models/export.rs
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --features otel,highs --bin dom-router \
    && rm -rf src target/release/dom-router* target/release/deps/dom_router-* \
        target/release/deps/libdom_router-* target/release/.fingerprint/dom-router-*

# The server itself. config/ is compiled in (the embedded demo).
COPY config config
COPY src src
RUN cargo build --release --locked --features otel,highs --bin dom-router \
    && install -D -m 0755 target/release/dom-router /out/dom-router


FROM debian:bookworm-slim

# The binary links glibc and the C++ runtime (for HiGHS); CA certificates let it reach
# rediss:// and https:// collectors.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 dom-router \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin dom-router

# The demo rules and stock, and the server settings a container needs on top of the built-in
# defaults: every listener on all interfaces.
COPY config/network.toml config/segments.toml config/stock.csv /etc/dom-router/config/
COPY <<EOF /etc/dom-router/config/server.toml
# The container's settings; everything else keeps the defaults built into the binary.
[server]
listen = "0.0.0.0:50051"
health_listen = "0.0.0.0:50052"

[metrics]
listen = "0.0.0.0:9464"
EOF

COPY --from=builder /out/dom-router /usr/local/bin/dom-router

USER 10001:10001
# gRPC, the plaintext health listener (for probes), Prometheus metrics
EXPOSE 50051 50052 9464
ENTRYPOINT ["dom-router"]
CMD ["serve", "--config", "/etc/dom-router/config", "--log-format", "json"]

LABEL org.opencontainers.image.title="dom-router" \
      org.opencontainers.image.description="Order sourcing and stock visibility over gRPC" \
      org.opencontainers.image.licenses="Apache-2.0"
