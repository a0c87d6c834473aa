# syntax=docker/dockerfile:1
#
# tagsweep container image: one static binary on distroless.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t tagsweep .
# (task image does this.) .git is not in the build context, so the version and commit come
# from these arguments: they are stamped into `tagsweep version` and the OCI labels.
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...

# The builder runs on the build machine's platform and cross-compiles (no emulation).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# Stamped into `tagsweep version`; without it the binary reports its module version.
ARG VERSION=""
# The commit built, stamped into `tagsweep version`.
ARG REVISION=""
# go.mod pins the Go version; never download another toolchain during a build.
ENV GOTOOLCHAIN=local CGO_ENABLED=0
WORKDIR /src
# Dependencies first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w ${VERSION:+-X main.version=${VERSION}} ${REVISION:+-X main.revision=${REVISION}}" \
      -o /out/tagsweep ./cmd/tagsweep

# No shell, no package manager, CA certificates and tzdata included (tag timestamps may be
# read in any IANA zone: --tag-timezone).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=""
ARG REVISION=""
ARG SOURCE="https://github.com/tagsweep/tagsweep"
LABEL org.opencontainers.image.title="tagsweep" \
      org.opencontainers.image.description="Prunes old tags from very large container-registry repositories, in parallel" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/tagsweep /usr/local/bin/tagsweep
# The image's nonroot user (65532), numeric so that Kubernetes can verify runAsNonRoot; any
# other UID works too (OpenShift assigns one): the binary writes only to /tmp.
USER 65532:65532
# /healthz, /readyz, /metrics (--http-addr, default :8080 for worker and coordinator).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tagsweep"]
