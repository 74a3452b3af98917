# One image for every subcommand: spread backend | frontend | xds | demo | certs | ...
#
#   docker build -t spread:dev .            (or: make image; buildah bud -t spread:dev .)
#
# The build stage's `go build` line is checked by repo_test.go (TestDockerfileBuildsStaticBinary):
# it must produce a static binary, so keep it on one line.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/spread ./cmd/spread

# distroless/static: no shell, no libc, CA certificates and /etc/passwd with "nonroot" (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spread /usr/local/bin/spread
USER 65532:65532
# gRPC 50051, health 50052, frontend HTTP 8081, admin 9090/9091, xDS 18000
EXPOSE 50051 50052 8081 9090 9091 18000
ENTRYPOINT ["/usr/local/bin/spread"]
CMD ["--help"]
