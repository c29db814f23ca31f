#!/usr/bin/env bash
# Tests Roost's .deb on this machine, end to end:
#
#   1. takes the .deb given as $1 (or builds one with `make deb` when none is given);
#   2. installs it with `dpkg -i` and checks what it installed: both binaries, the systemd unit
#      (the one in deploy/), /etc/roost/roost.toml as a conffile readable by the roost group only,
#      the `roost` system user, and /var/lib/roost owned by it with mode 0700;
#   3. starts Roost as the roost user from the installed files, with the unit's ExecStart line (not
#      through systemd: it is usually not PID 1 where this runs), on MQTT and admin ports chosen
#      free at run time (ROOST__MQTT__LISTEN and ROOST__API__LISTEN, which override the config);
#   4. publishes a message with mosquitto_pub and finds its row in /var/lib/roost/roost.db;
#   5. stops Roost with `roost stop` (as the roost user), then purges the package and checks that
#      its files are gone.
#
# Needs root, mosquitto_pub, sqlite3, curl and python3 (installs mosquitto-clients, sqlite3 and
# curl with apt when missing). Idempotent: a previous run's leftovers (a Roost it started, the
# package) are cleaned up first. What it leaves: the `roost` system user (a purge keeps it, as
# Debian packages do), and /var/lib/roost only if that existed before this run; if not, the
# script removes it (the package's purge keeps it, since it holds the operator's data).
#
# Usage: bash scripts/deb-test.sh [path/to/roost_VERSION_amd64.deb]
set -euo pipefail

cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs a package and creates a system user)"

missing=()
command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

deb="${1:-}"
if [ -z "$deb" ]; then
    say "building the package (make deb)"
    make deb
    target_dir="${CARGO_TARGET_DIR:-target}"
    deb=$(ls -t "$target_dir"/debian/roost_*.deb | head -n1)
fi
[ -f "$deb" ] || fail "no such package: $deb"

# A Roost this script started and that is still running (an interrupted earlier run).
pidfile=/run/roost-deb-test.pid
stop_ours() {
    if [ -f "$pidfile" ]; then
        local pid
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    fi
}
stop_ours
# A Roost the package started through systemd, where systemd runs: it would hold the data directory.
if [ -d /run/systemd/system ] && systemctl is-active --quiet roost 2>/dev/null; then
    systemctl stop roost
fi

if dpkg-query -W -f='${Status}' roost 2>/dev/null | grep -q "installed"; then
    say "purging a roost package left installed by an earlier run"
    dpkg --purge roost
fi
had_data_dir=no
[ -e /var/lib/roost ] && had_data_dir=yes
if [ "$had_data_dir" = no ]; then
    cleanup_data() { rm -rf /var/lib/roost; }
else
    cleanup_data() { :; }
fi
trap 'stop_ours; dpkg --purge roost >/dev/null 2>&1 || true; cleanup_data' EXIT

say "installing $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg -i "$deb"

say "checking what the package installed"
for f in /usr/bin/roost /usr/bin/roost-board; do
    [ -x "$f" ] || fail "$f is not installed"
done
unit=$(dpkg -L roost | grep '/systemd/system/roost.service$') || fail "no systemd unit in the package"
cmp "$unit" deploy/roost.service || fail "$unit is not deploy/roost.service"
dpkg-query -W -f='${Conffiles}\n' roost | grep -q '^ /etc/roost/roost.toml ' ||
    fail "/etc/roost/roost.toml is not a conffile"
[ "$(stat -c '%U:%G %a' /etc/roost/roost.toml)" = "root:roost 640" ] ||
    fail "/etc/roost/roost.toml is $(stat -c '%U:%G %a' /etc/roost/roost.toml), not root:roost 640"
getent passwd roost | grep -q ':/var/lib/roost:' || fail "no roost system user with home /var/lib/roost"
[ "$(id -u roost)" -lt 1000 ] || fail "the roost user is not a system user"
[ "$(stat -c '%U:%G %a' /var/lib/roost)" = "roost:roost 700" ] ||
    fail "/var/lib/roost is $(stat -c '%U:%G %a' /var/lib/roost), not roost:roost 700"
/usr/bin/roost --version
/usr/bin/roost-board --version
ls -l /usr/bin/roost /usr/bin/roost-board /etc/roost/roost.toml "$unit"
ls -ld /var/lib/roost
id roost

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
api_port=$(free_port)
while [ "$api_port" = "$mqtt_port" ]; do api_port=$(free_port); done

exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
say "starting Roost as the roost user: $exec_start (MQTT 127.0.0.1:$mqtt_port, API 127.0.0.1:$api_port)"
log=$(mktemp /tmp/roost-deb-test.XXXXXX.log)
# The unit's ExecStart, split on spaces (it has no quoting), run from / as systemd does.
read -r -a argv <<<"$exec_start"
(
    cd /
    exec env ROOST__MQTT__LISTEN="127.0.0.1:$mqtt_port" ROOST__API__LISTEN="127.0.0.1:$api_port" \
        runuser -u roost -- "${argv[@]}"
) >"$log" 2>&1 &
echo $! >"$pidfile"
up=no
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$api_port/health" >/dev/null 2>&1; then up=yes; break; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.2
done
[ "$up" = yes ] || { cat "$log"; fail "Roost did not come up"; }
ps -o user=,pid=,args= -u roost

device="debtest-$$-$(date +%s)"
say "publishing devices/$device/env (QoS 1)"
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t "devices/$device/env" -m '{"temp": 21.5, "door": {"open": true}}'

say "finding the row in /var/lib/roost/roost.db"
row=""
for _ in $(seq 1 50); do
    row=$(sqlite3 /var/lib/roost/roost.db \
        "SELECT device, temp, door_open FROM env WHERE device = '$device'" 2>/dev/null || true)
    [ -n "$row" ] && break
    sleep 0.2
done
[ "$row" = "$device|21.5|1" ] || { cat "$log"; fail "expected row '$device|21.5|1', got '$row'"; }
echo "row: $row"
runuser -u roost -- /usr/bin/roost --config /etc/roost/roost.toml status
ls -l /var/lib/roost

say "stopping Roost (roost stop, as the roost user)"
runuser -u roost -- /usr/bin/roost --config /etc/roost/roost.toml stop
pid=$(cat "$pidfile")
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "Roost is still running after roost stop"
rm -f "$pidfile"
echo "--- Roost's log"
cat "$log"
rm -f "$log"

say "purging the package"
dpkg --purge roost
for f in /usr/bin/roost /usr/bin/roost-board "$unit" /etc/roost/roost.toml; do
    [ ! -e "$f" ] || fail "$f is still there after the purge"
done
dpkg-statoverride --list /etc/roost/roost.toml >/dev/null 2>&1 && fail "the statoverride is still there"
[ -d /var/lib/roost ] && echo "kept by the purge: /var/lib/roost (the operator's data)"
if [ "$had_data_dir" = no ]; then
    rm -rf /var/lib/roost
    echo "removed /var/lib/roost (this run created it)"
fi
trap - EXIT

say "PASS: the .deb installs, runs Roost as the roost user, stores a message, stops and purges"
