# phase-sidecar image: a static binary on an empty (scratch) base.
#
#   docker build --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t phase-sidecar:v0.1.0 .
#
# The final stage holds only the binary and the CA bundle (for Vault and
# AWS over TLS): no shell, no package manager, uid 65532. The tests build
# the final stage with buildah around a locally built binary (deploy/docker).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/phase-sidecar ./cmd/phase-sidecar

FROM scratch AS final
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="phase-sidecar" \
      org.opencontainers.image.description="Delivers secrets from Vault, AWS or files into tmpfs files that apps read through NAME_FILE, and reloads the app on rotation." \
      org.opencontainers.image.source="https://github.com/phase-sidecar/phase-sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/phase-sidecar /phase-sidecar
ENV PHASE_SIDECAR_CONFIG=/etc/phase-sidecar/phase-sidecar.yaml
USER 65532:65532
EXPOSE 9102
ENTRYPOINT ["/phase-sidecar"]
CMD ["run"]
