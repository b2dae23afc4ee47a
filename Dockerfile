# Builds ivr12333 and runs it with the shipped prompts and dialplans.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin ivr12333

FROM debian:bookworm-slim
RUN useradd --system --home /srv/ivr12333 ivr
WORKDIR /srv/ivr12333
COPY --from=build /src/target/release/ivr12333 /usr/local/bin/ivr12333
COPY prompts ./prompts
COPY dialplans ./dialplans
RUN mkdir -p var && chown ivr var
USER ivr
EXPOSE 5060/udp 5060/tcp 8080/tcp 20000-20999/udp
ENTRYPOINT ["/usr/local/bin/ivr12333"]
CMD ["serve"]
