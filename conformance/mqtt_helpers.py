"""Helpers for the conformance tests: the broker under test, a paho-mqtt client wrapper that
waits for acknowledgements, a message collector, and a raw client for packet-level checks.

Every wait has a timeout and fails with what did arrive; nothing asserts on timing.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5

# How long a test waits for something that must arrive.
TIMEOUT = float(os.environ.get("CONFORMANCE_TIMEOUT", "5"))
# After a barrier has shown that delivery caught up, how long to keep looking for something that
# must not arrive (covers a broker that publishes a will or a retained message a little later).
GRACE = 0.5


# ----------------------------------------------------------------------------------- the broker


@dataclass(frozen=True)
class Broker:
    kind: str
    host: str
    port: int
    ws_port: Optional[int]
    user: Optional[str]
    password: Optional[str]

    @staticmethod
    def from_env() -> "Broker":
        port = os.environ.get("MQTT_PORT")
        if not port:
            raise RuntimeError("MQTT_PORT is not set: run the suite with conformance/run.py")
        ws = os.environ.get("MQTT_WS_PORT") or None
        return Broker(
            kind=os.environ.get("MQTT_BROKER", "unknown"),
            host=os.environ.get("MQTT_HOST", "127.0.0.1"),
            port=int(port),
            ws_port=int(ws) if ws else None,
            user=os.environ.get("MQTT_USER") or None,
            password=os.environ.get("MQTT_PASSWORD") or None,
        )


def new_id(prefix: str = "c") -> str:
    """A client id or topic level unique to this run (alphanumeric, at most 23 characters)."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


# --------------------------------------------------------------------------- received messages


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool = False
    # MQTT 5 properties, by paho's names (UserProperty, ResponseTopic, CorrelationData,
    # MessageExpiryInterval, ContentType, PayloadFormatIndicator, SubscriptionIdentifier...).
    props: dict = field(default_factory=dict)


def props_dict(props: Optional[Properties]) -> dict:
    if props is None:
        return {}
    out = {}
    for name in props.names:
        attr = name.replace(" ", "")
        if hasattr(props, attr):
            out[attr] = getattr(props, attr)
    return out


class Collector:
    """The messages a client received, in arrival order, with waits."""

    def __init__(self, name: str = ""):
        self.name = name
        self.messages: list[Message] = []
        self._cond = threading.Condition()

    def add(self, m: Message) -> None:
        with self._cond:
            self.messages.append(m)
            self._cond.notify_all()

    def snapshot(self) -> list[Message]:
        with self._cond:
            return list(self.messages)

    def matching(self, pred: Callable[[Message], bool]) -> list[Message]:
        return [m for m in self.snapshot() if pred(m)]

    def on_topic(self, topic: str) -> list[Message]:
        return self.matching(lambda m: m.topic == topic)

    def wait(self, pred: Callable[[Message], bool] = lambda m: True, count: int = 1,
             timeout: float = TIMEOUT) -> list[Message]:
        """Waits until `count` messages matching `pred` arrived; returns them. Fails (with what
        did arrive) after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if pred(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name}: expected {count} matching message(s) within {timeout} s, "
                        f"got {len(found)}; everything received: {describe(self.messages)}")
                self._cond.wait(left)

    def wait_topic(self, topic: str, count: int = 1, timeout: float = TIMEOUT) -> list[Message]:
        return self.wait(lambda m: m.topic == topic, count, timeout)

    def wait_payload(self, payload: bytes, timeout: float = TIMEOUT) -> Message:
        return self.wait(lambda m: m.payload == payload, 1, timeout)[0]


def describe(messages: Iterable[Message]) -> str:
    return "[" + ", ".join(
        f"{m.topic} {m.payload[:40]!r} q{m.qos}{' r' if m.retain else ''}" for m in messages) + "]"


# -------------------------------------------------------------------------- the paho wrapper


class Client:
    """A paho-mqtt 2.x client on its own network thread, with blocking calls that wait for the
    broker's acknowledgement. Never reconnects by itself."""

    def __init__(self, broker: Broker, version: int, client_id: Optional[str] = None, *,
                 clean: bool = True, session_expiry: Optional[int] = None,
                 username: Optional[str] = None, password: Optional[str] = None,
                 will: Optional[dict] = None, keepalive: int = 30, websocket: bool = False,
                 connect_props: Optional[Properties] = None, name: str = ""):
        self.broker = broker
        self.version = version
        self.client_id = new_id() if client_id is None else client_id
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.websocket = websocket
        self.connect_props = connect_props
        self.messages = Collector(name or self.client_id)
        self._lock = threading.Condition()
        self.connack: Optional[tuple[bool, int, dict]] = None
        self.disconnected: Optional[int] = None
        self._subacks: dict[int, list[int]] = {}
        self._unsubacks: dict[int, list[int]] = {}
        self._published: dict[int, int] = {}

        kwargs = dict(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                      client_id=self.client_id, protocol=version,
                      transport="websockets" if websocket else "tcp",
                      reconnect_on_failure=False)
        if version != V5:
            kwargs["clean_session"] = clean
        self.paho = mqtt.Client(**kwargs)
        if websocket:
            self.paho.ws_set_options(path="/mqtt")
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            self.paho.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                               will.get("retain", False), will.get("properties"))
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_publish = self._on_publish
        self.paho.on_message = self._on_message

    # callbacks (paho's network thread)

    def _on_connect(self, _c, _u, flags, reason, props):
        with self._lock:
            self.connack = (bool(flags.session_present), reason.value, props_dict(props))
            self._lock.notify_all()

    def _on_disconnect(self, _c, _u, _flags, reason, _props):
        with self._lock:
            self.disconnected = reason.value if hasattr(reason, "value") else int(reason)
            self._lock.notify_all()

    def _on_subscribe(self, _c, _u, mid, reasons, _props):
        with self._lock:
            self._subacks[mid] = [r.value for r in reasons]
            self._lock.notify_all()

    def _on_unsubscribe(self, _c, _u, mid, reasons, _props):
        with self._lock:
            self._unsubacks[mid] = [r.value for r in reasons] if isinstance(reasons, list) else []
            self._lock.notify_all()

    def _on_publish(self, _c, _u, mid, reason, _props):
        with self._lock:
            self._published[mid] = reason.value if hasattr(reason, "value") else int(reason)
            self._lock.notify_all()

    def _on_message(self, _c, _u, msg):
        self.messages.add(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain),
                                  bool(msg.dup), props_dict(getattr(msg, "properties", None))))

    def _wait(self, what: str, cond: Callable[[], bool], timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._lock:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.client_id}: no {what} within {timeout} s")
                self._lock.wait(left)

    # calls

    def connect(self, expect_success: bool = True, clean: Optional[bool] = None) -> tuple[bool, int, dict]:
        """Connects and waits for the CONNACK: (session present, reason code, properties)."""
        port = self.broker.ws_port if self.websocket else self.broker.port
        props = self.connect_props
        kwargs = {}
        if self.version == V5:
            if self.session_expiry is not None:
                props = props or Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
            kwargs["clean_start"] = self.clean if clean is None else clean
            kwargs["properties"] = props
        with self._lock:
            self.connack = None
            self.disconnected = None
        self.paho.connect(self.broker.host, port, self.keepalive, **kwargs)
        self.paho.loop_start()
        self._wait("CONNACK", lambda: self.connack is not None or self.disconnected is not None)
        if self.connack is None:
            raise AssertionError(f"{self.client_id}: connection closed before CONNACK")
        if expect_success:
            assert self.connack[1] == 0, f"{self.client_id}: CONNACK refused: {self.connack[1]:#x}"
        return self.connack

    def subscribe(self, filters, qos: int = 0, options: Optional[SubscribeOptions] = None,
                  properties: Optional[Properties] = None) -> list[int]:
        """Subscribes and waits for the SUBACK; returns its return / reason codes.
        `filters` is one filter, or a list of (filter, qos or SubscribeOptions)."""
        if isinstance(filters, str):
            arg = [(filters, options if options is not None else qos)]
        else:
            arg = list(filters)
        if self.version == V5:
            rc, mid = self.paho.subscribe(arg, properties=properties)
        else:
            rc, mid = self.paho.subscribe(arg)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe {arg}: {rc}"
        self._wait(f"SUBACK for {arg}", lambda: mid in self._subacks)
        return self._subacks[mid]

    def unsubscribe(self, filters) -> list[int]:
        """Unsubscribes and waits for the UNSUBACK; returns its reason codes (MQTT 5)."""
        rc, mid = self.paho.unsubscribe(filters)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe {filters}: {rc}"
        self._wait(f"UNSUBACK for {filters}", lambda: mid in self._unsubacks)
        return self._unsubacks[mid]

    def publish(self, topic: str, payload=b"", qos: int = 0, retain: bool = False,
                properties: Optional[Properties] = None, wait: bool = True) -> int:
        """Publishes; for QoS 1 and 2 waits for the PUBACK / PUBCOMP and returns its reason code
        (0 for MQTT 3.1.1). QoS 0 waits until the packet is written."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish {topic}: {info.rc}"
        if not wait:
            return 0
        self._wait(f"acknowledgement of the publish on {topic}", lambda: info.mid in self._published
                   or self.disconnected is not None)
        if info.mid not in self._published:
            raise AssertionError(f"{self.client_id}: disconnected ({self.disconnected}) before the "
                                 f"publish on {topic} was acknowledged")
        return self._published[info.mid]

    def disconnect(self, reason: Optional[int] = None, properties: Optional[Properties] = None) -> None:
        """A clean DISCONNECT (MQTT 5: with `reason`), then waits for the connection to close."""
        if self.version == V5 and reason is not None:
            from paho.mqtt.reasoncodes import ReasonCode
            self.paho.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=reason), properties)
        else:
            self.paho.disconnect(properties=properties) if self.version == V5 else self.paho.disconnect()
        try:
            self._wait("close after DISCONNECT", lambda: self.disconnected is not None)
        finally:
            self.paho.loop_stop()

    def wait_disconnected(self, timeout: float = TIMEOUT) -> int:
        """Waits until the broker closes the connection; returns the reason paho reports."""
        self._wait("disconnection by the broker", lambda: self.disconnected is not None, timeout)
        return self.disconnected

    def is_connected(self) -> bool:
        return self.paho.is_connected()

    def close(self) -> None:
        """Stops the client without waiting for anything (teardown)."""
        try:
            if self.paho.is_connected():
                self.paho.disconnect()
        except Exception:
            pass
        try:
            self.paho.loop_stop()
        except Exception:
            pass


def barrier(publisher: Client, subscriber: Client, topic: str, qos: int = 1) -> None:
    """Publishes a unique marker on `topic` and waits until `subscriber` has it: whatever the
    broker was going to send the subscriber before it has been sent by then."""
    marker = f"barrier-{uuid.uuid4().hex}".encode()
    publisher.publish(topic, marker, qos=qos)
    subscriber.messages.wait_payload(marker)
    time.sleep(GRACE)


def publish_props(**values) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    for k, v in values.items():
        setattr(p, k, v)
    return p


# --------------------------------------------------------------------------- the raw client

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
         7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
         12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s) -> bytes:
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    def __repr__(self):
        return f"{NAMES.get(self.type, self.type)}(flags={self.flags:#x}, body={self.body[:60]!r})"

    @property
    def packet_id(self) -> int:
        return struct.unpack("!H", self.body[:2])[0]


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: Optional[int]
    props: dict


class Closed(Exception):
    """The broker closed the connection."""


class RawClient:
    """One MQTT connection driven packet by packet, for the checks paho hides (packet ids, flows,
    abrupt closes, silence past the keep alive)."""

    def __init__(self, broker: Broker, version: int = V311):
        self.version = version
        self.sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)
        self.buf = b""

    # framing

    def send(self, ptype: int, flags: int, body: bytes) -> None:
        self.sock.sendall(bytes([(ptype << 4) | flags]) + varint(len(body)) + body)

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                raise Closed
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        """The next packet; raises TimeoutError, or Closed when the broker closed the connection."""
        deadline = time.monotonic() + timeout
        first = self._read(1, deadline)[0]
        length, mult = 0, 1
        while True:
            b = self._read(1, deadline)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return Packet(first >> 4, first & 0x0F, self._read(length, deadline))

    def expect(self, ptype: int, timeout: float = TIMEOUT, skip: Iterable[int] = ()) -> Packet:
        """The next packet of type `ptype` (packets of the types in `skip` are passed over)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                p = self.recv(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"no {NAMES[ptype]} within {timeout} s") from None
            except Closed:
                raise AssertionError(f"connection closed while waiting for {NAMES[ptype]}") from None
            if p.type == ptype:
                return p
            assert p.type in skip, f"expected {NAMES[ptype]}, got {p!r}"

    def wait_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Reads until the broker closes the connection; returns the packets read before. Fails if
        it is still open after `timeout` seconds."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout} s; received {got}") from None

    def props(self, ptype: int, props: Optional[Properties]) -> bytes:
        if self.version != V5:
            return b""
        return (props or Properties(ptype)).pack()

    # packets

    def connect(self, client_id: str, clean: bool = True, keepalive: int = 60,
                username: Optional[str] = None, password: Optional[str] = None,
                will: Optional[dict] = None, properties: Optional[Properties] = None,
                level: Optional[int] = None, expect_connack: bool = True):
        """Sends CONNECT; with `expect_connack` returns (session present, return code, props)."""
        flags = 0x02 if clean else 0
        payload = utf8(client_id)
        if will is not None:
            flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
            if self.version == V5:
                payload += (will.get("properties") or Properties(PacketTypes.WILLMESSAGE)).pack()
            payload += utf8(will["topic"]) + utf8(will.get("payload", b""))
        if username is not None:
            flags |= 0x80
            payload += utf8(username)
        if password is not None:
            flags |= 0x40
            payload += utf8(password)
        body = utf8("MQTT") + bytes([level if level is not None else self.version, flags]) \
            + struct.pack("!H", keepalive) + self.props(PacketTypes.CONNECT, properties) + payload
        self.send(CONNECT, 0, body)
        if not expect_connack:
            return None
        return self.read_connack()

    def read_connack(self, timeout: float = TIMEOUT):
        p = self.expect(CONNACK, timeout)
        props = {}
        if self.version == V5 and len(p.body) > 2:
            props = props_dict(Properties(PacketTypes.CONNACK).unpack(p.body[2:])[0])
        return bool(p.body[0] & 1), p.body[1], props

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, packet_id: int = 0,
                retain: bool = False, dup: bool = False, properties: Optional[Properties] = None):
        body = utf8(topic)
        if qos:
            body += struct.pack("!H", packet_id)
        body += self.props(PacketTypes.PUBLISH, properties) + payload
        self.send(PUBLISH, (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0), body)

    def ack(self, ptype: int, packet_id: int) -> None:
        """PUBACK, PUBREC, PUBREL or PUBCOMP (success) for `packet_id`."""
        self.send(ptype, 0x02 if ptype == PUBREL else 0, struct.pack("!H", packet_id))

    def subscribe(self, packet_id: int, filters: list[tuple[str, int]]) -> list[int]:
        """SUBSCRIBE (each filter with its QoS / MQTT 5 options byte); returns the SUBACK codes."""
        body = struct.pack("!H", packet_id) + self.props(PacketTypes.SUBSCRIBE, None)
        for f, opts in filters:
            body += utf8(f) + bytes([opts])
        self.send(SUBSCRIBE, 0x02, body)
        p = self.expect(SUBACK, skip=(PUBLISH,))
        assert p.packet_id == packet_id, f"SUBACK for packet id {p.packet_id}, sent {packet_id}"
        rest = p.body[2:]
        if self.version == V5:
            _, n = Properties(PacketTypes.SUBACK).unpack(rest)
            rest = rest[n:]
        return list(rest)

    def disconnect(self, reason: Optional[int] = None) -> None:
        body = b"" if self.version != V5 or reason is None else bytes([reason, 0])
        self.send(DISCONNECT, 0, body)

    def parse_publish(self, p: Packet) -> Publish:
        assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
        qos = (p.flags >> 1) & 3
        n = struct.unpack("!H", p.body[:2])[0]
        topic = p.body[2:2 + n].decode()
        rest = p.body[2 + n:]
        pid = None
        if qos:
            pid = struct.unpack("!H", rest[:2])[0]
            rest = rest[2:]
        props = {}
        if self.version == V5:
            parsed, used = Properties(PacketTypes.PUBLISH).unpack(rest)
            props = props_dict(parsed)
            rest = rest[used:]
        return Publish(topic, rest, qos, bool(p.flags & 1), bool(p.flags & 8), pid, props)

    def close(self) -> None:
        """Closes the socket without a DISCONNECT (an abrupt loss of the connection)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def sub_options(qos: int, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> SubscribeOptions:
    return SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=retain_as_published,
                            retainHandling=retain_handling)
