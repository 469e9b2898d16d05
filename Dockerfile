# The jutong binary, for docker-compose.yml and real deployments.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/jutong ./cmd/jutong

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 jutong && mkdir -p /var/lib/jutong && chown jutong /var/lib/jutong
COPY --from=build /out/jutong /usr/local/bin/jutong
USER jutong
VOLUME /var/lib/jutong
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/jutong"]
CMD ["serve"]
