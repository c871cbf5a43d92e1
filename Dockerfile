# microseg controller image: build with cargo, run on a minimal non-root base.
# Build: docker build -t microseg:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, for layer caching.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked --bin microseg || true
COPY src ./src
COPY deploy/examples ./deploy/examples
COPY charts/microseg/files ./charts/microseg/files
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin microseg

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/microseg /usr/local/bin/microseg
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/microseg"]
CMD ["controller"]
