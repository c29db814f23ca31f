# Roost board client for MicroPython: the board protocol of docs/board-protocol.md (version 1)
# over a minimal MQTT 3.1.1 client of its own (clean session, keepalive, retained last will,
# QoS 1 publish and subscribe). Runs code with `exec` (output captured through `print`), receives
# uploads chunk by chunk into a temporary file on flash (renamed into place once the whole file's
# SHA-256 matches), answers `fs` ls/cat/rm/mkdir/stat inside its root, renames and resets.
#
# On a board: copy this file (or its .mpy from mpy-cross) and a main.py that calls
# `roost_board.run({...})`. On the unix port: `micropython roost_board.py`, settings from the
# ROOST_BOARD_* variables (see config_from_env).
import gc
import json
import os
import select
import socket
import struct
import sys
import time
import binascii
import hashlib

VERSION = "0.1.0"
PROTOCOL_VERSION = 1
PIECE = 512  # bytes read or written at a time: no big buffers


def log(*args):
    print("roost_board:", *args)


def _hex(b):
    return binascii.hexlify(b).decode()


def _name_ok(s, most):
    if type(s) is not str or not 0 < len(s) <= most:
        return False
    for c in s:
        if not (c.isalpha() or c.isdigit() or c in "-_.") or ord(c) > 127:
            return False
    return True


def board_name_ok(name):
    return _name_ok(name, 64) and name not in (".", "..")


def check_path(path):
    # A protocol path: relative, '/'-separated, <= 255 bytes, no empty/'.'/'..' component, no
    # '\' and no control character. Returns an error text, or None.
    if path == "":
        return "path %s is empty" % json.dumps(path)
    bad = None
    if len(path.encode()) > 255:
        bad = "is longer than 255 bytes"
    elif path[0] == "/":
        bad = "is absolute; paths are relative to the board's root"
    elif "\\" in path:
        bad = "holds '\\'; separate directories with '/'"
    elif any(ord(c) < 32 or 127 <= ord(c) < 160 for c in path):
        bad = "holds a control character"
    else:
        for part in path.split("/"):
            if part == "":
                bad = "has an empty component"
            elif part in (".", ".."):
                bad = "has a '.' or '..' component"
    return bad and "path %s %s" % (json.dumps(path), bad)


def _is_hex64(s):
    return type(s) is str and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


# The fields of each op, and their types: requests are strict (docs/board-protocol.md).
_INT, _STR, _BOOL = 1, 2, 3
OPS = {
    "execute": {"code": _STR, "timeout_ms": _INT},
    "upload": {"path": _STR, "offset": _INT, "data": _STR, "chunk_sha256": _STR,
               "total_size": _INT, "file_sha256": _STR, "last": _BOOL},
    "fs": {"action": _STR, "path": _STR},
    "rename": {"new_name": _STR},
    "reset": {},
}


def check_request(r):
    # An error text for an invalid request, or None.
    op = r.get("op")
    if op not in OPS:
        return "unknown op %s" % json.dumps(op)
    fields = OPS[op]
    for k in r:
        if k not in ("id", "op") and k not in fields:
            return "unknown field `%s` in %s request" % (k, op)
    for k, t in fields.items():
        if k not in r:
            return "missing field `%s` in %s request" % (k, op)
        v = r[k]
        ok = (type(v) is int and v >= 0) if t == _INT else \
            (type(v) is str) if t == _STR else (type(v) is bool)
        if not ok:
            return "field `%s` of %s request has the wrong type" % (k, op)
    if op == "execute" and r["timeout_ms"] < 1:
        return "timeout_ms must be at least 1"
    if op == "upload":
        for k in ("chunk_sha256", "file_sha256"):
            if not _is_hex64(r[k]):
                return "%s must be a SHA-256 digest as 64 lowercase hex digits" % k
        return check_path(r["path"])
    if op == "fs":
        if r["action"] not in ("ls", "cat", "rm", "mkdir", "stat"):
            return "unknown fs action %s" % json.dumps(r["action"])
        if r["path"] in ("", ".") and r["action"] in ("ls", "stat"):
            return None
        return check_path(r["path"])
    if op == "rename" and not board_name_ok(r["new_name"]):
        return "board name %s may hold only ASCII letters, digits, '-', '_' and '.'" % json.dumps(r["new_name"])
    return None


def _stat(p):
    try:
        return os.stat(p)
    except OSError:
        return None


def _is_dir(st):
    return st is not None and st[0] & 0x4000 != 0


def _makedirs(path):
    # Creates `path` (absolute) and its missing parents.
    cur = ""
    for part in path.split("/"):
        if not part:
            continue
        cur += "/" + part
        st = _stat(cur)
        if st is None:
            os.mkdir(cur)
        elif not _is_dir(st):
            raise OSError(20)  # ENOTDIR


def _entry(name, full):
    st = _stat(full)
    if st is None:
        return {"name": name, "type": "other"}
    if _is_dir(st):
        return {"name": name, "type": "dir"}
    if st[0] & 0x8000:
        return {"name": name, "type": "file", "size": st[6]}
    return {"name": name, "type": "other"}


class _Text:
    # Bytes to text in pieces: a character cut between pieces stays whole, invalid UTF-8 becomes
    # U+FFFD.
    def __init__(self):
        self.tail = b""

    def push(self, b, final=False):
        b = self.tail + b
        self.tail = b""
        if not final:
            # Keep an incomplete sequence at the end for the next piece.
            i = len(b) - 1
            while i >= 0 and len(b) - i <= 4 and b[i] & 0xC0 == 0x80:
                i -= 1
            if i >= 0 and b[i] >= 0xC0:
                need = 2 if b[i] < 0xE0 else 3 if b[i] < 0xF0 else 4
                if len(b) - i < need:
                    self.tail = b[i:]
                    b = b[:i]
        try:
            return str(b, "utf-8")
        except UnicodeError:
            out = []
            i = 0
            while i < len(b):
                c = b[i]
                n = 1 if c < 0x80 else 2 if 0xC0 <= c < 0xE0 else 3 if 0xE0 <= c < 0xF0 else 4 if 0xF0 <= c < 0xF8 else 0
                try:
                    if n == 0:
                        raise UnicodeError
                    out.append(str(b[i:i + n], "utf-8"))
                    i += n
                except UnicodeError:
                    out.append("\ufffd")
                    i += 1
            return "".join(out)


class _Stop(Exception):
    pass


class _Output:
    # `execute` output: buffered a little, sent as `output` replies in order.
    def __init__(self, board, rid, deadline):
        self.board, self.rid, self.deadline = board, rid, deadline
        self.stream, self.buf = "stdout", []
        self.size = 0

    def write(self, stream, text):
        if stream != self.stream:
            self.flush()
            self.stream = stream
        self.buf.append(text)
        self.size += len(text)
        if self.size >= PIECE:
            self.flush()
        if time.ticks_diff(time.ticks_ms(), self.deadline) > 0:
            raise _Stop()

    def flush(self):
        if self.buf:
            data = "".join(self.buf)
            self.buf, self.size = [], 0
            # Pieces of at most 1024 characters, so that every reply fits a small max payload.
            for i in range(0, len(data), 1024):
                self.board.reply(self.rid, "output", {"stream": self.stream, "data": data[i:i + 1024]})


class Board:
    def __init__(self, cfg, name):
        self.cfg = cfg
        self.name = name
        self.root = cfg["root"]
        self.keepalive = cfg.get("keepalive", 30)
        self.max_payload = cfg.get("max_payload", 4096)
        self.max_upload = cfg.get("max_upload_bytes")
        self.sock = None
        self.pid = 0
        self.pending = []  # cmd payloads that arrived while waiting for an acknowledgement
        self.seqs = {}
        self.upload = None  # (temporary file, bytes hashed, running sha256) of the upload in hand
        self.last_sent = time.ticks_ms()
        self.prefix = "roost/boards/" + name + "/"

    # ------------------------------------------------------------------------------ MQTT

    def _send(self, first, *parts):
        n = 0
        for p in parts:
            n += len(p)
        hdr = bytearray([first])
        while True:
            b = n & 0x7F
            n >>= 7
            hdr.append(b | 0x80 if n else b)
            if not n:
                break
        self.sock.write(hdr)
        for p in parts:
            if p:
                self.sock.write(p)
        self.last_sent = time.ticks_ms()

    @staticmethod
    def _str(s):
        if type(s) is str:
            s = s.encode()
        return struct.pack("!H", len(s)) + s

    def _read(self, n):
        b = self.sock.read(n)
        if b is None or len(b) < n:
            raise OSError("connection closed")
        return b

    def _packet(self, timeout_ms):
        # The next packet as (type byte, body), or None if nothing came within timeout_ms. A
        # PUBLISH over our limit is read and dropped, body None.
        if not self.poller.poll(timeout_ms):
            return None
        first = self._read(1)[0]
        n, shift = 0, 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if n > self.max_payload + 1024:
            while n:
                n -= len(self._read(min(n, PIECE)))
            return first, None
        return first, (self._read(n) if n else b"")

    def _handle_packet(self, first, body):
        # Incoming packets other than the acknowledgement being waited for.
        kind = first & 0xF0
        if kind == 0x30:
            qos = (first >> 1) & 3
            if body is None:
                log("dropped a message over max_payload")
                return
            tl = struct.unpack("!H", body[:2])[0]
            topic = body[2:2 + tl].decode()
            i = 2 + tl
            if qos:
                self._send(0x40, body[i:i + 2])
                i += 2
            if topic == self.prefix + "cmd":
                self.pending.append(body[i:])
        elif kind == 0x90 and body and body[-1] == 0x80:
            raise OSError("subscription refused")

    def _wait(self, kind, pid):
        # Reads packets until the acknowledgement `kind` for packet id `pid`.
        until = time.ticks_add(time.ticks_ms(), 30000)
        while time.ticks_diff(until, time.ticks_ms()) > 0:
            p = self._packet(1000)
            if p is None:
                continue
            first, body = p
            if first & 0xF0 == kind and body[:2] == struct.pack("!H", pid):
                return body
            self._handle_packet(first, body)
        raise OSError("no acknowledgement from the server")

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def publish(self, topic, payload, retain=False):
        # QoS 1: returns once the server acknowledged it.
        if type(payload) is str:
            payload = payload.encode()
        pid = self._next_pid()
        self._send(0x32 | (1 if retain else 0), self._str(topic), struct.pack("!H", pid), payload)
        self._wait(0x40, pid)

    def status(self, state):
        s = {"state": state, "platform": self.cfg["platform"], "client_version": VERSION,
             "protocol_version": PROTOCOL_VERSION, "root_dir": self.root,
             "max_payload": self.max_payload}
        if state != "offline" and hasattr(gc, "mem_free"):
            gc.collect()
            s["free_memory"] = gc.mem_free()
        return json.dumps(s)

    def connect(self):
        host, port = self.cfg["host"], self.cfg["port"]
        addr = socket.getaddrinfo(host, port)[0][-1]
        self.sock = socket.socket()
        try:
            self.sock.connect(addr)
            try:
                self.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: small replies at once
            except Exception:
                pass
            self.sock.settimeout(30)
            if self.cfg.get("ca"):
                self.sock = self._tls(self.sock, host)
            self.poller = select.poll()
            self.poller.register(self.sock, select.POLLIN)
            flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session; will, QoS 1, retained
            user, pw = self.cfg.get("username"), self.cfg.get("password")
            tail = b""
            if user:
                flags |= 0x80
                tail += self._str(user)
                if pw is not None:
                    flags |= 0x40
                    tail += self._str(pw)
            var = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", self.keepalive)
            self._send(0x10, var, self._str(self.name), self._str(self.prefix + "status"),
                       self._str(self.status("offline")), tail)
            p = self._packet(30000)
            if p is None or p[0] != 0x20 or p[1][1] != 0:
                raise OSError("connection refused by the server: %r" % (p,))
            pid = self._next_pid()
            self._send(0x82, struct.pack("!H", pid), self._str(self.prefix + "cmd"), b"\x01")
            body = self._wait(0x90, pid)
            if body[-1] == 0x80:
                raise OSError("subscription to the cmd topic refused")
            self.publish(self.prefix + "status", self.status("idle"), True)
        except Exception:
            self.close()
            raise
        log("connected to %s:%d as %s" % (host, port, self.name))

    def _tls(self, sock, host):
        # TLS with the CA (and the board's certificate and key) as DER files: MicroPython's
        # TLS reads no PEM. It does not check the server unless told to.
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=self.cfg["ca"])
        if self.cfg.get("cert"):
            ctx.load_cert_chain(self.cfg["cert"], self.cfg["key"])
        try:
            return ctx.wrap_socket(sock, server_hostname=host)
        except ValueError as e:  # a server it cannot verify (or a clock not set yet): retry
            raise OSError("TLS: %s" % str(e).strip())

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except Exception:
                pass
            self.sock = None

    def goodbye(self, status_payload):
        # Publishes a last status, then disconnects cleanly (no will).
        try:
            self.publish(self.prefix + "status", status_payload, True)
            self._send(0xE0)
        except Exception:
            pass
        self.close()

    def serve(self):
        # Handles requests until the connection drops (raises OSError) or a rename (returns the
        # new name) or reset.
        ping_sent = None
        while True:
            if self.pending:
                r = self.handle(self.pending.pop(0))
                if r is not None:
                    return r
                continue
            half = self.keepalive * 500
            idle = time.ticks_diff(time.ticks_ms(), self.last_sent)
            if idle >= half:
                if ping_sent is not None:
                    raise OSError("no answer to PINGREQ")
                self._send(0xC0)
                ping_sent = time.ticks_ms()
                continue
            p = self._packet(half - idle)
            if p is None:
                continue
            if p[0] & 0xF0 == 0xD0:
                ping_sent = None
            else:
                ping_sent = None
                self._handle_packet(*p)

    # --------------------------------------------------------------------------- replies

    def reply(self, rid, kind, fields):
        seq = self.seqs.get(rid, 0)
        self.seqs[rid] = seq + 1
        msg = {"id": rid, "seq": seq, "type": kind}
        msg.update(fields)
        self.publish(self.prefix + "reply", json.dumps(msg))

    def finish(self, rid, ok, error=None, **more):
        fields = {"ok": ok}
        if error is not None:
            fields["error"] = error
        fields.update(more)
        self.reply(rid, "result", fields)
        self.seqs.pop(rid, None)
        if len(self.seqs) > 16:
            self.seqs = {}

    # -------------------------------------------------------------------------- requests

    def handle(self, payload):
        try:
            r = json.loads(payload)
        except Exception:
            log("dropped a request that is not JSON")
            return None
        del payload
        rid = r.get("id") if type(r) is dict else None
        if not _name_ok(rid, 64):
            log("dropped a request without a valid id")
            return None
        err = check_request(r)
        if err:
            self.finish(rid, False, err)
            return None
        op = r["op"]
        try:
            if op == "execute":
                self.execute(rid, r["code"], r["timeout_ms"])
            elif op == "upload":
                self.upload_chunk(rid, r)
            elif op == "fs":
                self.fs(rid, r["action"], r["path"])
            elif op == "rename":
                return self.rename(rid, r["new_name"])
            elif op == "reset":
                self.reset(rid)
        except OSError:
            raise
        except Exception as e:
            self.finish(rid, False, "%s: %s" % (type(e).__name__, e))
        return None

    def execute(self, rid, code, timeout_ms):
        self.publish(self.prefix + "status", self.status("busy"), True)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        out = _Output(self, rid, deadline)

        def _print(*args, sep=" ", end="\n", file=None):
            text = sep.join([str(a) for a in args]) + end
            if file is None or file is sys.stdout or file is sys.stderr:
                out.write("stderr" if file is sys.stderr else "stdout", text)
            else:
                file.write(text)

        g = {"__name__": "__main__", "print": _print}
        ok, error, exit_code = True, None, 0
        try:
            exec(code, g)
        except _Stop:
            ok, error, exit_code = False, "timed out after %d ms" % timeout_ms, None
        except KeyboardInterrupt:
            raise
        except SystemExit as e:
            c = e.args[0] if e.args else 0
            exit_code = c if type(c) is int else (0 if c is None else 1)
            ok = exit_code == 0
            if not ok:
                error = "exit status %d" % exit_code
        except BaseException as e:
            import io
            tb = io.StringIO()
            sys.print_exception(e, tb)
            out.flush()
            out.stream = "stderr"
            # The traceback without this module's own frame.
            out.buf.append("".join([ln + "\n" for ln in tb.getvalue().split("\n")
                                    if ln and "roost_board.py\", line" not in ln]))
            msg = str(e)
            ok, error, exit_code = False, type(e).__name__ + (": " + msg if msg else ""), None
        g = None
        if ok and time.ticks_diff(time.ticks_ms(), deadline) > 0:
            ok, error, exit_code = False, "timed out after %d ms" % timeout_ms, None
        out.flush()
        if exit_code is None:
            self.finish(rid, ok, error)
        else:
            self.finish(rid, ok, error, exit_code=exit_code)
        self.publish(self.prefix + "status", self.status("idle"), True)

    def _full(self, path):
        return self.root if path in ("", ".") else self.root.rstrip("/") + "/" + path

    def _oserror(self, rid, path, e):
        if e.args and e.args[0] == 2:
            self.finish(rid, False, "no such file or directory: " + path)
        else:
            self.finish(rid, False, "%s: %s" % (path, e))

    def fs(self, rid, action, path):
        full = self._full(path)
        try:
            st = os.stat(full) if action != "mkdir" else None
            if action == "ls":
                if not _is_dir(st):
                    return self.finish(rid, False, path + ": not a directory")
                names = sorted([e[0] for e in os.ilistdir(full)])
                value = [_entry(n, full.rstrip("/") + "/" + n) for n in names]
                return self.finish(rid, True, value=value)
            if action == "stat":
                name = "." if path in ("", ".") else path.split("/")[-1]
                return self.finish(rid, True, value=_entry(name, full))
            if action == "rm":
                (os.rmdir if _is_dir(st) else os.remove)(full)
            elif action == "mkdir":
                _makedirs(full)
            elif action == "cat":
                if _is_dir(st):
                    return self.finish(rid, False, path + ": is a directory")
                text = _Text()
                with open(full, "rb") as f:
                    while True:
                        b = f.read(PIECE)
                        s = text.push(b, not b)
                        if s:
                            self.reply(rid, "output", {"stream": "stdout", "data": s})
                        if not b:
                            break
            self.finish(rid, True)
        except OSError as e:
            self._oserror(rid, path, e)

    def upload_chunk(self, rid, r):
        path, offset, total = r["path"], r["offset"], r["total_size"]
        if self.max_upload is not None and total > self.max_upload:
            return self.finish(rid, False, "upload of %d bytes is over this board's limit of %d bytes"
                               % (total, self.max_upload))
        full = self._full(path)
        d, name = full.rsplit("/", 1)
        try:
            _makedirs(d)
            if _is_dir(_stat(full)):
                return self.finish(rid, False, path + ": is a directory")
            part = "%s/.%s.%s.part" % (d, name, r["file_sha256"][:16])
            st = _stat(part)
            held = st[6] if st else 0
            if offset > held:
                return self.reply(rid, "progress", {"offset": held})
            try:
                data = binascii.a2b_base64(r["data"])
            except Exception:
                return self.finish(rid, False, "upload data is not base64 (standard alphabet, padded with '=')")
            r["data"] = None
            gc.collect()
            end = offset + len(data)
            if end > total:
                return self.finish(rid, False, "upload chunk of %d bytes at offset %d goes past total_size %d"
                                   % (len(data), offset, total))
            if r["last"] and end != total:
                return self.finish(rid, False, "the last upload chunk ends at %d but total_size is %d"
                                   % (end, total))
            _cut(part, offset, held)
            if _hex(hashlib.sha256(data).digest()) != r["chunk_sha256"]:
                return self.finish(rid, False, "chunk sha256 mismatch at offset %d" % offset)
            with open(part, "ab") as f:
                f.write(data)
            # The running whole-file hash, while chunks come in order from 0.
            up = self.upload
            if offset == 0:
                up = self.upload = [part, 0, hashlib.sha256()]
            if up and up[0] == part and up[1] == offset:
                up[2].update(data)
                up[1] = end
            else:
                self.upload = up = None
            del data
            if not r["last"]:
                return self.reply(rid, "progress", {"offset": end})
            if up and up[1] == total:
                digest = up[2].digest()
            else:
                h = hashlib.sha256()
                with open(part, "rb") as f:
                    while True:
                        b = f.read(PIECE)
                        if not b:
                            break
                        h.update(b)
                digest = h.digest()
            self.upload = None
            if _hex(digest) != r["file_sha256"]:
                os.remove(part)
                return self.finish(rid, False, "file sha256 mismatch")
            try:
                os.rename(part, full)
            except OSError:
                # Filesystems whose rename does not replace (FAT): remove, then rename.
                os.remove(full)
                os.rename(part, full)
            self.finish(rid, True)
        except OSError as e:
            self._oserror(rid, path, e)

    def rename(self, rid, new_name):
        sf = self.cfg.get("state_file")
        if sf:
            try:
                with open(sf, "w") as f:
                    f.write(json.dumps({"from": self.cfg["name"], "to": new_name}))
            except OSError as e:
                return self.finish(rid, False, "cannot remember the new name: %s" % e)
        self.finish(rid, True)
        self.goodbye(b"")
        return new_name

    def reset(self, rid):
        try:
            import machine
        except ImportError:
            machine = None
        self.finish(rid, True)
        self.goodbye(self.status("offline"))
        if machine and hasattr(machine, "reset"):
            machine.reset()
        raise SystemExit(75)  # the unix port: exit for a supervisor to restart


def _cut(part, offset, held):
    # Cuts the temporary file to `offset` bytes (no truncate in MicroPython: copy the head).
    if held <= offset:
        return
    tmp = part + "~"
    with open(part, "rb") as src, open(tmp, "wb") as dst:
        left = offset
        while left:
            b = src.read(min(left, PIECE))
            if not b:
                break
            dst.write(b)
            left -= len(b)
    os.remove(part)
    os.rename(tmp, part)


def effective_name(cfg):
    # The configured name, or what a remembered rename made of it.
    try:
        with open(cfg["state_file"]) as f:
            r = json.loads(f.read())
        if r["from"] == cfg["name"] and board_name_ok(r["to"]):
            return r["to"]
    except Exception:
        pass
    return cfg["name"]


def run(cfg):
    # Runs the client for ever: cfg holds name, host, port, root and optionally username,
    # password, keepalive (s), max_payload, max_upload_bytes, state_file, platform.
    if not board_name_ok(cfg["name"]):
        raise ValueError("bad board name %r" % cfg["name"])
    root = cfg.get("root") or "/"
    sf = cfg.get("state_file")
    if sf and sf[0] != "/":
        cfg["state_file"] = os.getcwd().rstrip("/") + "/" + sf
    if root[0] != "/":
        root = os.getcwd().rstrip("/") + "/" + root
    _makedirs(root)
    os.chdir(root)  # code run by `execute` sees the root as its working directory
    cfg["root"] = os.getcwd()
    if "platform" not in cfg:
        p = sys.platform
        cfg["platform"] = "micropython-" + p if p in ("linux", "darwin", "freebsd") else p
    name = effective_name(cfg)
    backoff = 100
    while True:
        board = Board(cfg, name)
        try:
            board.connect()
            backoff = 100
            name = board.serve()
        except OSError as e:
            board.close()
            log("connection lost (%s); reconnecting in %d ms" % (e, backoff))
            time.sleep_ms(backoff + time.ticks_ms() % 100)
            backoff = min(backoff * 2, 5000)


def config_from_env():
    # The unix port: the Linux agent's variables (docs/boards.md).
    env = os.getenv
    server = env("ROOST_BOARD_SERVER") or "127.0.0.1:1883"
    host, port = server.rsplit(":", 1)
    cfg = {"name": env("ROOST_BOARD_NAME"), "host": host.strip("[]"), "port": int(port),
           "root": env("ROOST_BOARD_ROOT") or ".", "username": env("ROOST_BOARD_USERNAME"),
           "password": env("ROOST_BOARD_PASSWORD"), "state_file": env("ROOST_BOARD_STATE_FILE"),
           "ca": env("ROOST_BOARD_CA_FILE"), "cert": env("ROOST_BOARD_CERT_FILE"),
           "key": env("ROOST_BOARD_KEY_FILE")}
    for k in ("keepalive", "max_payload", "max_upload_bytes"):
        v = env("ROOST_BOARD_" + k.upper())
        if v:
            cfg[k] = int(v)
    if not cfg["name"]:
        raise SystemExit("ROOST_BOARD_NAME is not set")
    return cfg


if __name__ == "__main__":
    run(config_from_env())
