#!/usr/bin/env python3
"""Runs the MQTT conformance suite against a fresh broker, or against Mosquitto and Roost side by side.

    python run.py --broker mosquitto|roost [--roost-bin PATH] [--junit FILE] [--ws|--no-ws] [-- PYTEST ARGS]
    python run.py --compare --roost-bin PATH [--junit PREFIX]

Each broker is started on free loopback ports, configured alike: anonymous clients with full
access; one user `d-1` (with a password) that may publish and subscribe only under
`devices/d-1/#`; a plain MQTT listener and a WebSocket listener. The suite finds it through
MQTT_HOST, MQTT_PORT, MQTT_WS_PORT, MQTT_USER, MQTT_PASSWORD and MQTT_BROKER.

With --compare, exits non-zero if a test that passes on Mosquitto does not pass on Roost, unless
conformance/known_differences.toml lists it with a reason.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICE = "d-1"
START_TIMEOUT = 30.0
SUITE_TIMEOUT = 600.0


def log(msg: str) -> None:
    print(f"run.py: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mqtt_ready(port: int) -> bool:
    """True if an MQTT 3.1.1 CONNECT on `port` gets a CONNACK accepting it."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            cid = b"conformance-probe"
            body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(cid).to_bytes(2, "big") + cid
            s.sendall(bytes([0x10, len(body)]) + body)
            ack = b""
            while len(ack) < 4:
                chunk = s.recv(4 - len(ack))
                if not chunk:
                    return False
                ack += chunk
            s.sendall(b"\xe0\x00")
            return ack[0] == 0x20 and ack[3] == 0
    except OSError:
        return False


@dataclass
class Running:
    kind: str
    proc: subprocess.Popen
    port: int
    ws_port: int | None
    user: str
    password: str
    workdir: Path
    logfile: Path
    note: str = ""

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(MQTT_BROKER=self.kind, MQTT_HOST="127.0.0.1", MQTT_PORT=str(self.port),
                   MQTT_WS_PORT=str(self.ws_port or ""), MQTT_USER=self.user,
                   MQTT_PASSWORD=self.password, MQTT_WS_NOTE=self.note, PYTHONDONTWRITEBYTECODE="1")
        return env

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_ready(r: Running) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if r.proc.poll() is not None:
            break
        if mqtt_ready(r.port):
            return
        time.sleep(0.2)
    tail = r.logfile.read_text(errors="replace")[-3000:] if r.logfile.exists() else ""
    r.stop()
    raise SystemExit(f"run.py: {r.kind} did not accept an MQTT connection on port {r.port} "
                     f"(exit status {r.proc.poll()}); its log:\n{tail}")


# ------------------------------------------------------------------------------------ Mosquitto


def start_mosquitto(workdir: Path, ws: bool) -> Running:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(exe).exists():
        raise SystemExit("run.py: no mosquitto binary: run `make services` (apt package mosquitto)")
    password = secrets.token_hex(16)
    passwd = workdir / "passwd"
    subprocess.run([passwd_tool, "-c", "-b", str(passwd), DEVICE, password], check=True,
                   stdout=subprocess.DEVNULL)
    acl = workdir / "acl"
    # Topics before any `user` line are for anonymous clients; `#` does not match topics that
    # begin with `$`, so one more line gives them the `$conformance/` tree as well.
    acl.write_text("topic readwrite #\ntopic readwrite $conformance/#\n\n"
                   f"user {DEVICE}\ntopic readwrite devices/{DEVICE}/#\n")
    port, ws_port = free_port(), (free_port() if ws else None)
    lines = [
        "per_listener_settings false",
        "allow_anonymous true",
        f"password_file {passwd}",
        f"acl_file {acl}",
        "persistence false",
        "set_tcp_nodelay true",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        f"listener {port} 127.0.0.1",
    ]
    if ws_port:
        lines += [f"listener {ws_port} 127.0.0.1", "protocol websockets"]
    if os.geteuid() == 0:
        # Otherwise it drops to the user `mosquitto`, which cannot read the files above.
        lines.insert(0, "user root")
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    logfile = workdir / "mosquitto.log"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=logfile.open("w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    r = Running("mosquitto", proc, port, ws_port, DEVICE, password, workdir, logfile)
    wait_ready(r)
    return r


# ---------------------------------------------------------------------------------------- Roost


def roost_accepts_key(roost_bin: str, workdir: Path, toml: str) -> tuple[bool, str]:
    probe = workdir / "probe.toml"
    probe.write_text(toml)
    out = subprocess.run([roost_bin, "config", "check", "--config", str(probe), "--data-dir",
                          str(workdir / "probe-data")], capture_output=True, text=True)
    return out.returncode == 0, (out.stderr or out.stdout).strip()


def start_roost(workdir: Path, roost_bin: str, ws: bool | None) -> Running:
    if not Path(roost_bin).exists():
        raise SystemExit(f"run.py: no roost binary at {roost_bin}")
    data = workdir / "data"
    data.mkdir(mode=0o700)
    port, ws_port, api_port = free_port(), free_port(), free_port()
    note = ""
    ws_line = f'ws_listen = "127.0.0.1:{ws_port}"\n'
    if ws is None:
        ok, err = roost_accepts_key(roost_bin, workdir, "[mqtt]\n" + ws_line)
        if not ok:
            note = f"no WebSocket listener: this roost rejects mqtt.ws_listen ({err.splitlines()[0]})"
            log(note)
            ws = False
        else:
            ws = True
    conf = workdir / "roost.toml"
    conf.write_text(
        "# written by conformance/run.py\n"
        "shutdown_timeout_secs = 5\n\n"
        "[mqtt]\n"
        f'listen = "127.0.0.1:{port}"\n'
        + (ws_line if ws else "")
        + "\n[api]\n"
        f'listen = "127.0.0.1:{api_port}"\n')
    logfile = workdir / "roost.log"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    proc = subprocess.Popen([roost_bin, "serve", "--config", str(conf), "--data-dir", str(data)],
                            stdout=logfile.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)
    r = Running("roost", proc, port, ws_port if ws else None, DEVICE, "", workdir, logfile, note)
    wait_ready(r)
    # `roost device add` goes through the admin API of the running server.
    out = subprocess.run([roost_bin, "device", "add", DEVICE, "--config", str(conf), "--data-dir", str(data)],
                         capture_output=True, text=True)
    found = re.findall(r"\b[0-9a-f]{64}\b", out.stdout)
    if out.returncode != 0 or len(found) != 1:
        r.stop()
        raise SystemExit(f"run.py: roost device add {DEVICE} failed or printed no secret "
                         f"(exit {out.returncode}): {out.stdout!r} {out.stderr!r}")
    r.password = found[0]
    return r


# -------------------------------------------------------------------------------- the test run


def parse_junit(path: Path) -> dict[str, tuple[str, str]]:
    """{test id: (PASS|FAIL|SKIP, message)} in file order."""
    results: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return results
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        status, msg = "PASS", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, msg = "FAIL", (child.get("message") or child.text or "").strip()
                break
            if child.tag == "skipped":
                status, msg = "SKIP", (child.get("message") or "").strip()
        if name in results and results[name][0] == "FAIL":
            continue  # an error in teardown after a failure: keep the failure
        results[name] = (status, msg)
    return results


def first_line(msg: str, width: int = 160) -> str:
    line = msg.splitlines()[0] if msg else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def run_suite(kind: str, roost_bin: str | None, junit: Path | None, ws: bool | None,
              pytest_args: list[str], verbose: bool) -> dict[str, tuple[str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"conformance-{kind}-"))
    running = None
    try:
        running = start_mosquitto(workdir, ws is not False) if kind == "mosquitto" \
            else start_roost(workdir, roost_bin, ws)
        log(f"{kind} on 127.0.0.1:{running.port} (WebSocket: {running.ws_port or 'none'}), "
            f"user {running.user}")
        xml = junit or workdir / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-p", "no:cacheprovider", "-q",
               "-o", "junit_family=xunit2", "-o", f"junit_suite_name=conformance-{kind}",
               f"--junitxml={xml}", "-rN"] + pytest_args
        out = subprocess.run(cmd, env=running.env(), cwd=HERE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=SUITE_TIMEOUT)
        (workdir / "pytest.log").write_text(out.stdout)
        if verbose or out.returncode not in (0, 1):
            print(out.stdout)
        results = parse_junit(xml)
        if not results:
            raise SystemExit(f"run.py: pytest ran no test against {kind} (exit {out.returncode}):\n"
                             f"{out.stdout[-3000:]}")
        if running.proc.poll() is not None:
            log(f"{kind} exited during the run (status {running.proc.returncode})")
        return results
    finally:
        if running:
            running.stop()
            if running.proc.returncode not in (0, None, -signal.SIGTERM):
                log(f"{kind} exited with status {running.proc.returncode}; log in {running.logfile}")
        if running and (os.environ.get("CONFORMANCE_KEEP") or running.proc.returncode not in (0, -15)):
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def print_results(kind: str, results: dict[str, tuple[str, str]]) -> None:
    for name, (status, msg) in results.items():
        extra = f"  {first_line(msg)}" if status != "PASS" and msg else ""
        print(f"{status:4}  {name}{extra}")
    print(f"{kind}: {totals(results)}")


def totals(results: dict[str, tuple[str, str]]) -> str:
    n = {s: sum(1 for v in results.values() if v[0] == s) for s in ("PASS", "FAIL", "SKIP")}
    return f"{n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped"


def known_differences() -> dict[str, str]:
    path = HERE / "known_differences.toml"
    if not path.exists():
        return {}
    import tomllib

    data = tomllib.loads(path.read_text())
    known = data.get("differences", {})
    for test, reason in known.items():
        if not isinstance(reason, str) or not reason.strip():
            raise SystemExit(f"run.py: {path.name}: {test} needs a reason")
    return known


def is_known(test: str, known: dict[str, str]) -> str | None:
    return known.get(test) or known.get(test.split("[")[0])


def compare(roost_bin: str, junit: Path | None, ws: bool | None, pytest_args: list[str],
            verbose: bool) -> int:
    mq = run_suite("mosquitto", None, junit and junit.with_name(junit.stem + "-mosquitto.xml"), None,
                   pytest_args, verbose)
    ro = run_suite("roost", roost_bin, junit and junit.with_name(junit.stem + "-roost.xml"), ws,
                   pytest_args, verbose)
    known = known_differences()
    names = list(mq) + [n for n in ro if n not in mq]
    width = max(len(n) for n in names)
    print(f"{'test':{width}} | mosquitto | roost")
    print(f"{'-' * width}-+-----------+------")
    regressions, excused = [], []
    for n in names:
        a, b = mq.get(n, ("-", ""))[0], ro.get(n, ("-", ""))[0]
        mark = ""
        if a == "PASS" and b != "PASS":
            reason = is_known(n, known)
            if reason:
                excused.append((n, reason))
                mark = "  (known difference)"
            else:
                regressions.append(n)
                mark = "  <-- REGRESSION"
        print(f"{n:{width}} | {a:9} | {b}{mark}")
    print(f"mosquitto: {totals(mq)}")
    print(f"roost:     {totals(ro)}")
    for n in names:
        status, msg = ro.get(n, ("-", ""))
        if status != "PASS" and msg:
            print(f"roost {status} {n}: {first_line(msg, 300)}")
    for n, reason in excused:
        print(f"known difference {n}: {reason}")
    if regressions:
        print(f"{len(regressions)} test(s) pass on Mosquitto but not on Roost: {', '.join(regressions)}")
        return 1
    print("every test that passes on Mosquitto passes on Roost")
    return 0


def main() -> int:
    argv = sys.argv[1:]
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["mosquitto", "roost"])
    ap.add_argument("--compare", action="store_true", help="run Mosquitto and Roost and compare")
    ap.add_argument("--roost-bin", help="the roost binary")
    ap.add_argument("--junit", type=Path, help="write JUnit XML here (with --compare: FILE-<broker>.xml)")
    ap.add_argument("--ws", dest="ws", action="store_true", default=None,
                    help="give Roost a WebSocket listener (mqtt.ws_listen); default: if the binary knows the key")
    ap.add_argument("--no-ws", dest="ws", action="store_false", help="no WebSocket listener for Roost")
    ap.add_argument("-v", "--verbose", action="store_true", help="print pytest's own output")
    args = ap.parse_args(argv)
    if args.roost_bin:
        args.roost_bin = str(Path(args.roost_bin).resolve())
    if args.compare:
        if not args.roost_bin:
            ap.error("--compare needs --roost-bin")
        return compare(args.roost_bin, args.junit, args.ws, pytest_args, args.verbose)
    if not args.broker:
        ap.error("give --broker or --compare")
    if args.broker == "roost" and not args.roost_bin:
        ap.error("--broker roost needs --roost-bin")
    results = run_suite(args.broker, args.roost_bin, args.junit, args.ws, pytest_args, args.verbose)
    print_results(args.broker, results)
    return 1 if any(s == "FAIL" for s, _ in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
