# The targets CI runs are exactly these: `.ci/run` calls `make lint` and `make test`.
CARGO ?= cargo

.PHONY: run test lint bench services fmt

## Run Roost on its embedded defaults (MQTT 127.0.0.1:1883, admin API 127.0.0.1:8080, SQLite).
run:
	$(CARGO) run --release --bin roost -- serve

# Prefix for a recipe line that needs the services: loads the ROOST_TEST_* URLs that
# scripts/services.sh wrote (each recipe line is its own shell, so every such line needs it).
SVC_ENV = set -a; . "$${ROOST_SVC_DIR:-/tmp/roost-svc}/env"; set +a;

## Install and start what the tests need (idempotent), then run every test.
test: services
	$(SVC_ENV) $(CARGO) test --workspace --doc --quiet
	$(SVC_ENV) $(CARGO) nextest run --workspace --no-fail-fast

## Formatting and lints, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## End-to-end throughput of the release build; prints figures.
bench: services
	$(SVC_ENV) $(CARGO) bench -p roost-connectors --bench sql_sinks
	$(SVC_ENV) $(CARGO) bench -p roost-connectors --bench schemaless_sinks
	$(SVC_ENV) $(CARGO) bench -p roost --bench e2e
	$(CARGO) bench -p roost --bench boards

## Install (if missing) the tools and services the tests use, start the services on free ports
## and write their URLs to ${ROOST_SVC_DIR:-/tmp/roost-svc}/env (`bash scripts/services.sh down` stops them).
services:
	bash scripts/services.sh

fmt:
	$(CARGO) fmt --all
