# The targets CI runs are exactly these: `.ci/run` calls `make lint` and `make test`.
CARGO ?= cargo

.PHONY: run test lint bench services processors fmt deb deb-test dist dist-check

## Run Roost on its embedded defaults (MQTT 127.0.0.1:1883, admin API 127.0.0.1:8080, SQLite).
run:
	$(CARGO) run --release --bin roost -- serve

# Prefix for a recipe line that needs the services: loads the ROOST_TEST_* URLs that
# scripts/services.sh wrote (each recipe line is its own shell, so every such line needs it).
SVC_ENV = set -a; . "$${ROOST_SVC_DIR:-/tmp/roost-svc}/env"; set +a;

## Install and start what the tests need (idempotent), build the processors, then run every test.
test: services processors
	$(SVC_ENV) $(CARGO) test --workspace --doc --quiet
	$(SVC_ENV) $(CARGO) nextest run --workspace --no-fail-fast

## Formatting and lints, warnings as errors (plugins-wasm, its own workspace, too), and the
## house rules clippy does not check: no import cycle between modules, no source file over 600 lines.
lint:
	$(CARGO) fmt --all -- --check
	python3 scripts/house-rules.py
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(WASM_TARGET)
	cd plugins-wasm && $(CARGO) fmt --check && $(CARGO) clippy --release -- -D warnings

## End-to-end throughput of the release build; prints figures.
bench: services processors
	$(CARGO) bench -p roost-processors --bench processors
	$(SVC_ENV) $(CARGO) bench -p roost-connectors --bench sql_sinks
	$(SVC_ENV) $(CARGO) bench -p roost-connectors --bench schemaless_sinks
	$(SVC_ENV) $(CARGO) bench -p roost --bench e2e
	$(SVC_ENV) $(CARGO) bench -p roost --bench durability
	$(CARGO) bench -p roost --bench security
	$(CARGO) bench -p roost --bench boards
	$(CARGO) bench -p roost --bench broker_state
	$(CARGO) bench -p roost-spool --bench append

## Install (if missing) the tools and services the tests use, start the services on free ports
## and write their URLs to ${ROOST_SVC_DIR:-/tmp/roost-svc}/env (`bash scripts/services.sh down` stops them).
services:
	bash scripts/services.sh

# The Rust target processors are built for, added to the toolchain only if it is missing.
WASM_TARGET = rustup target list --installed | grep -x wasm32-wasip2 >/dev/null || rustup target add wasm32-wasip2
# Where plugins-wasm builds to, as cargo does: $CARGO_TARGET_DIR if set (CI sets it), else plugins-wasm/target.
WASM_OUT = $${CARGO_TARGET_DIR:-plugins-wasm/target}/wasm32-wasip2

## Build the processors (docs/processors.md): plugins-wasm's SDK, examples and test modules (into
## <target dir>/wasm32-wasip2/release) and the Python example (into <target dir>/wasm32-wasip2/python),
## first installing the wasm32-wasip2 target and componentize-py if they are missing.
processors:
	$(WASM_TARGET)
	componentize-py --version >/dev/null 2>&1 || pip install componentize-py==0.25.1
	cd plugins-wasm && $(CARGO) build --release
	mkdir -p "$(WASM_OUT)/python"
	bash plugins-wasm/python/build.sh plugins-wasm/python/examples/myt_compat.py "$(WASM_OUT)/python/myt_compat.wasm"

# Where cargo builds to, as cargo does: $CARGO_TARGET_DIR if set, else target/.
TARGET_DIR = $${CARGO_TARGET_DIR:-target}

## A Debian package (docs/packaging.md): roost and roost-board, the systemd unit, /etc/roost/roost.toml,
## the roost user and /var/lib/roost; into <target dir>/debian/. Installs cargo-deb if missing.
deb:
	$(CARGO) deb --version >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked
	$(CARGO) build --release -p roost -p roost-board
	$(CARGO) deb -p roost --no-build

## Install the .deb on this machine, run Roost from it as the roost user, publish, find the row,
## then stop and purge (root; scripts/deb-test.sh says what it changes).
deb-test:
	bash scripts/deb-test.sh

MUSL = x86_64-unknown-linux-musl
## Static (musl) release binaries of roost and roost-board, and their SHA-256 sums, into dist/;
## adds the musl target and (apt) musl-tools if they are missing.
dist:
	rustup target list --installed | grep -x $(MUSL) >/dev/null || rustup target add $(MUSL)
	command -v musl-gcc >/dev/null || { apt-get update && apt-get install -y --no-install-recommends musl-tools; }
	$(CARGO) build --release --target $(MUSL) -p roost -p roost-board
	mkdir -p dist
	cp "$(TARGET_DIR)/$(MUSL)/release/roost" "$(TARGET_DIR)/$(MUSL)/release/roost-board" dist/
	cd dist && sha256sum roost roost-board > SHA256SUMS && cat SHA256SUMS

## Check dist/: sums, static linking, and that both run (and roost stores a message) chroot'ed
## into a directory holding nothing else (root; scripts/dist-check.sh).
dist-check:
	bash scripts/dist-check.sh

fmt:
	$(CARGO) fmt --all
	cd plugins-wasm && $(CARGO) fmt
