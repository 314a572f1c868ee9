# One image with every binary; compose.yaml picks the command.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/locator /src/target/release/redfish-scraper \
     /src/target/release/inventory-projector /src/target/release/boot-api /src/target/release/validator /src/target/release/web \
     /src/target/release/metal-cli /usr/local/bin/
COPY profiles /etc/metal/profiles
WORKDIR /var/lib/metal
