# Jutong: the two commands are `make demo` and `make test`.
GO      ?= go
ARGS    ?=
BIN     := bin/jutong

.PHONY: all build demo dev test deps vet check-compose check-rules clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/jutong

# Runs the bus with synthetic departments publishing; pass flags with ARGS,
# e.g. make demo ARGS="--events 20000 --exit".
demo: build
	./$(BIN) demo $(ARGS)

# Runs the bus until Ctrl-C, keeping its data under .jutong/.
dev: build
	./$(BIN) dev $(ARGS)

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Tests run against the embedded Kafka, a real PostgreSQL and a real ClickHouse:
# from JUTONG_POSTGRES_DSN / JUTONG_CLICKHOUSE_DSN, else throwaway local servers
# (installed from Debian packages first when running as root).
# Debian packages the tests use (kcat, prometheus, docker-compose, the
# PostgreSQL, ClickHouse and MariaDB servers), installed when root.
deps:
	@bash scripts/deps.sh

test: deps vet check-compose check-rules
	$(GO) test -count=1 -timeout 45m ./...

# docker-compose.yml must be valid with its passwords given, and refuse to
# render without them (no default password to fall back on).
COMPOSE_SECRETS := JUTONG_KAFKA_PASSWORD JUTONG_BROKER_PASSWORD JUTONG_POSTGRES_PASSWORD JUTONG_CLICKHOUSE_PASSWORD GRAFANA_PASSWORD
check-compose:
	@if command -v docker-compose >/dev/null 2>&1; then \
		if env $(addprefix -u ,$(COMPOSE_SECRETS)) docker-compose -f docker-compose.yml config -q 2>/dev/null; then \
			echo "docker-compose.yml renders without its passwords: a default must have crept in"; exit 1; fi; \
		env $(addsuffix =check-only,$(COMPOSE_SECRETS)) docker-compose -f docker-compose.yml config -q && \
			echo "docker-compose.yml: valid (and refuses to render without its passwords)"; \
	else echo "docker-compose not installed: skipping docker-compose.yml validation"; fi

# The alert rules must load in a real Prometheus (Debian package prometheus).
check-rules:
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules dashboards/alerts.yml dashboards/federation/alerts.yml && promtool test rules dashboards/alerts_test.yml dashboards/federation/alerts_test.yml; \
	elif [ "$$CI" = true ]; then echo "promtool missing (Debian package prometheus)"; exit 1; \
	else echo "promtool not installed: skipping dashboards/alerts.yml validation"; fi
	@if command -v amtool >/dev/null 2>&1; then \
		amtool check-config dashboards/alertmanager.yml >/dev/null && \
		for r in critical:page warning:ticket info:report; do \
			amtool config routes test --config.file=dashboards/alertmanager.yml --verify.receivers=$${r#*:} severity=$${r%%:*} >/dev/null 2>&1 || \
			{ echo "dashboards/alertmanager.yml: severity=$${r%%:*} does not reach receiver $${r#*:}"; exit 1; }; \
		done && echo "dashboards/alertmanager.yml: valid, severities routed to page, ticket, report"; \
	elif [ "$$CI" = true ]; then echo "amtool missing (Debian package prometheus-alertmanager)"; exit 1; \
	else echo "amtool not installed: skipping dashboards/alertmanager.yml validation"; fi

clean:
	rm -rf bin .jutong
