#!/usr/bin/env bash
# Installs, if missing, what Roost's tests need on a Debian machine, and starts the services
# they talk to. Idempotent: a second run changes nothing. Tests find services through
# ROOST_TEST_* environment variables.
#
# Today: the MQTT command-line clients (mosquitto_pub/mosquitto_sub), the sqlite3 shell, and
# cargo-nextest.
set -euo pipefail

need_apt=()
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "services: need ${need_apt[*]}; run as root or install them: apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
    echo "services: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "services: installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

echo "services: ready (mosquitto-clients $(dpkg-query -W -f='${Version}' mosquitto-clients 2>/dev/null || echo present), sqlite3 $(sqlite3 --version | cut -d' ' -f1))"
