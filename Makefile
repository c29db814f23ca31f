# The targets CI runs are exactly these: `.ci/run` calls `make lint` and `make test`.
CARGO ?= cargo

.PHONY: run test lint bench services fmt

## Run Roost on its embedded defaults (MQTT 127.0.0.1:1883, admin API 127.0.0.1:8080, SQLite).
run:
	$(CARGO) run --release --bin roost -- serve

## Install and start what the tests need (idempotent), then run every test.
test: services
	$(CARGO) test --workspace --doc --quiet
	$(CARGO) nextest run --workspace --no-fail-fast

## Formatting and lints, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## End-to-end throughput of the release build; prints figures.
bench: services
	$(CARGO) bench -p roost --bench e2e

## Install (if missing) the tools and services the tests use.
services:
	bash scripts/services.sh

fmt:
	$(CARGO) fmt --all
