#!/usr/bin/env bash
# Checks the static binaries `make dist` wrote to dist/:
#
#   1. their SHA-256 sums match dist/SHA256SUMS;
#   2. they are statically linked (`file`, `ldd`);
#   3. they run with nothing of this machine's: an empty directory holding only the binaries, the
#      container's config (deploy/container/roost.toml), CA certificates and the data directory,
#      laid out as deploy/Containerfile's `scratch` stage lays them out, is chroot'ed into as user
#      65532 (no /proc, /dev, /tmp, libc or shell in there). `--version` and `--help` of both, then
#      `roost serve` on loopback ports chosen free at run time; a message published with
#      mosquitto_pub must appear in the SQLite database in that directory; SIGTERM (as a container
#      runtime sends) must stop it cleanly. (`roost stop` and `roost status` look for the server in
#      /proc, which a container has and the chroot has not.)
#
# Needs root (chroot), mosquitto_pub, sqlite3 and python3. Leaves nothing behind.
# Usage: bash scripts/dist-check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (it uses chroot)"
[ -x dist/roost ] && [ -x dist/roost-board ] || fail "no dist/roost or dist/roost-board: run make dist"

say "sums"
(cd dist && sha256sum -c SHA256SUMS)

say "linking"
for b in dist/roost dist/roost-board; do
    file "$b"
    file "$b" | grep -Eq "statically linked|static-pie linked" || fail "$b is not statically linked"
    # ldd says so on stderr and exits non-zero for a static binary.
    out=$(ldd "$b" 2>&1 || true)
    echo "ldd $b: $out"
    case "$out" in *"not a dynamic executable"* | *"statically linked"*) ;; *) fail "ldd finds libraries in $b" ;; esac
    ls -l "$b"
done

root=$(mktemp -d /tmp/roost-dist-root.XXXXXX)
chmod 755 "$root"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT
install -d "$root/usr/bin" "$root/etc/roost" "$root/etc/ssl/certs"
install -m 755 dist/roost dist/roost-board "$root/usr/bin/"
install -m 644 deploy/container/roost.toml "$root/etc/roost/roost.toml"
install -m 644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
install -d -o 65532 -g 65532 -m 0700 "$root/var/lib/roost"
say "the chroot ($root): everything in it"
(cd "$root" && find . | sort)

in_root() { chroot --userspec=65532:65532 "$root" "$@"; }
say "--version and --help inside it, as user 65532"
in_root /usr/bin/roost --version
in_root /usr/bin/roost-board --version
in_root /usr/bin/roost --help | head -n 5
in_root /usr/bin/roost-board --help | head -n 5

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
api_port=$(free_port)
while [ "$api_port" = "$mqtt_port" ]; do api_port=$(free_port); done
say "roost serve inside it (MQTT 127.0.0.1:$mqtt_port, API 127.0.0.1:$api_port)"
log=$(mktemp /tmp/roost-dist-check.XXXXXX.log)
env -i ROOST__MQTT__LISTEN="127.0.0.1:$mqtt_port" ROOST__API__LISTEN="127.0.0.1:$api_port" \
    "$(command -v chroot)" --userspec=65532:65532 "$root" /usr/bin/roost --config /etc/roost/roost.toml serve >"$log" 2>&1 &
pid=$!
up=no
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$api_port/health', timeout=1)" 2>/dev/null; then
        up=yes
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
done
[ "$up" = yes ] || { cat "$log"; fail "roost serve did not come up in the chroot"; }

device="distcheck-$$"
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t "devices/$device/env" -m '{"temp": 21.5}'
row=""
for _ in $(seq 1 50); do
    row=$(sqlite3 "$root/var/lib/roost/roost.db" "SELECT device, temp FROM env WHERE device = '$device'" 2>/dev/null || true)
    [ -n "$row" ] && break
    sleep 0.2
done
[ "$row" = "$device|21.5" ] || { cat "$log"; fail "expected row '$device|21.5', got '$row'"; }
echo "row: $row"
ls -l "$root/var/lib/roost"

# SIGTERM from outside, as a container runtime stops it (`roost stop` inside the chroot cannot
# tell the server is alive: it looks in /proc, which a container has and this directory has not).
say "SIGTERM: it must drain, flush and exit 0"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || { cat "$log"; fail "roost exited $status after SIGTERM"; }
grep -q "roost stopped cleanly" "$log" || { cat "$log"; fail "no clean stop in the log"; }
echo "--- its log"
cat "$log"
rm -f "$log"

say "PASS: static, and they run (and store a message) with nothing but themselves"
