# Build: docker build -t wechat_retention_exporter .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION}" \
      -o /out/wechat_retention_exporter .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wechat_retention_exporter /bin/wechat_retention_exporter
COPY exporter.yml /etc/wechat_retention_exporter/exporter.yml
USER nonroot
EXPOSE 9866
ENTRYPOINT ["/bin/wechat_retention_exporter"]
CMD ["--config.file=/etc/wechat_retention_exporter/exporter.yml"]
