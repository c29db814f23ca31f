"""MQTT over WebSocket (MQTT 3.1.1 and 5, section 6)."""

import base64
import os
import socket

import pytest

from mqtt_helpers import TIMEOUT


@pytest.fixture
def ws_port(broker):
    if not broker.ws_port:
        note = os.environ.get("MQTT_WS_NOTE") or "MQTT_WS_PORT is not set"
        pytest.skip(f"no WebSocket listener: {note}")
    return broker.ws_port


def test_MQTT_6_0_0_1_websocket_publish_and_receive(client, version, ws_port, topic):
    """MQTT-6.0.0-1, -2: "MQTT Control Packets MUST be sent in WebSocket binary data frames"; "A
    single WebSocket data frame can contain multiple or partial MQTT Control Packets. The receiver
    MUST NOT assume that MQTT Control Packets are aligned on WebSocket frame boundaries" (a
    WebSocket client publishes to and receives from clients on either transport)."""
    ws_sub = client(version, websocket=True)
    ws_sub.subscribe(f"{topic}/#", 1)
    tcp_sub = client(version)
    tcp_sub.subscribe(f"{topic}/#", 1)
    ws_pub = client(version, websocket=True)
    big = bytes(range(256)) * 300  # spans several frames
    ws_pub.publish(f"{topic}/from-ws", b"over websocket", qos=1)
    ws_pub.publish(f"{topic}/from-ws", big, qos=1)
    client(version).publish(f"{topic}/from-tcp", b"over tcp", qos=1)
    for sub in (ws_sub, tcp_sub):
        sub.messages.wait_payload(b"over websocket")
        sub.messages.wait_payload(big)
        sub.messages.wait_payload(b"over tcp")


def test_MQTT_6_0_0_4_websocket_subprotocol_is_mqtt(broker, ws_port):
    """MQTT-6.0.0-4: "The WebSocket Sub Protocol name selected and returned by the server MUST be
    "mqtt"" (the client offered it in Sec-WebSocket-Protocol)."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /mqtt HTTP/1.1\r\nHost: {broker.host}:{ws_port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: mqtt\r\n\r\n")
    with socket.create_connection((broker.host, ws_port), timeout=TIMEOUT) as s:
        s.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
    assert lines[0].split(" ")[1:2] == ["101"], f"the upgrade was answered {lines[0]!r}"
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:] if ":" in h)}
    assert headers.get("sec-websocket-protocol") == "mqtt", f"subprotocol {headers.get('sec-websocket-protocol')!r}"
