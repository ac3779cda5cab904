# The ledgerproof binary for docker-compose.yml: gateway, worker and migrate
# all run from this one image (ENTRYPOINT ledgerproof; the compose command is
# the subcommand and its flags).

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: a static binary that runs on the small runtime image below.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ledgerproof ./cmd/ledgerproof

# Alpine rather than scratch/distroless: the compose health checks use its
# busybox wget, and a shell helps when debugging a chaos drill.
FROM alpine:3.21
RUN adduser -D -H -u 10001 ledgerproof
COPY --from=build /out/ledgerproof /usr/local/bin/ledgerproof
USER ledgerproof
EXPOSE 8080 9100
ENTRYPOINT ["ledgerproof"]
CMD ["help"]
