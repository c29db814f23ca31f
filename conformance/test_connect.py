"""CONNECT and CONNACK: session present, client identifiers, refusals, session takeover, protocol
errors, keep alive."""

from mqtt_helpers import CONNACK, DISCONNECT, PINGREQ, PINGRESP, V311, V5, new_id
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PERSISTENT = dict(clean=False, session_expiry=300)


def session_props(expiry: int) -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = expiry
    return p


def test_MQTT_3_2_2_1_clean_session_gets_session_present_0(client, version, topic):
    """MQTT-3.2.2-1 (5.0: MQTT-3.2.2-2): "If the Server accepts a connection with CleanSession set
    to 1, the Server MUST set Session Present to 0 in the CONNACK packet"."""
    cid = new_id()
    first = client(version, client_id=cid, **PERSISTENT)
    first.subscribe(f"{topic}/x", 1)
    first.disconnect()
    again = client(version, client_id=cid, clean=True)
    assert again.connack[0] is False, "Session Present was 1 for a clean session"


def test_MQTT_3_2_2_2_session_present_1_when_session_stored(client, version, topic):
    """MQTT-3.2.2-2 (5.0: MQTT-3.2.2-3): "If the Server accepts a connection with CleanSession set
    to 0, the Server MUST set Session Present to 1 if it has stored Session state for the supplied
    client ID"."""
    cid = new_id()
    first = client(version, client_id=cid, **PERSISTENT)
    first.subscribe(f"{topic}/x", 1)
    first.disconnect()
    again = client(version, client_id=cid, **PERSISTENT)
    assert again.connack[0] is True, "Session Present was 0 for a stored session"


def test_MQTT_3_2_2_3_no_stored_session_gets_session_present_0(client, version):
    """MQTT-3.2.2-3: "If the Server does not have stored Session state, it MUST set Session
    Present to 0 in the CONNACK packet"."""
    c = client(version, **PERSISTENT)
    assert c.connack[0] is False


def test_MQTT_3_1_3_5_23_byte_alphanumeric_client_id_accepted(client, version):
    """MQTT-3.1.3-5: "The Server MUST allow ClientIds which are between 1 and 23 UTF-8 encoded
    bytes in length, and that contain only the characters
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ""."""
    cid = ("Z9" + new_id("")).ljust(23, "q")[:23]
    c = client(version, client_id=cid)
    assert c.connack[1] == 0


def test_MQTT_3_1_3_6_empty_client_id_gets_unique_id(raw, version):
    """MQTT-3.1.3-6 (5.0: MQTT-3.1.3-6, MQTT-3.2.2-16): "A Server MAY allow a Client to supply a
    ClientId that has a length of zero bytes, however if it does so the Server MUST treat this as
    a special case and assign a unique ClientId to that Client" (MQTT 5: and return it as the
    Assigned Client Identifier)."""
    a, b = raw(version), raw(version)
    present, code, props = a.connect("", clean=True)
    assert code == 0, f"CONNACK {code:#x} for an empty client id with a clean session"
    assert present is False
    present_b, code_b, props_b = b.connect("", clean=True)
    assert code_b == 0
    if version == V5:
        assert props.get("AssignedClientIdentifier"), f"no Assigned Client Identifier: {props}"
        assert props["AssignedClientIdentifier"] != props_b.get("AssignedClientIdentifier")
    # Unique: the second did not take the first one's session over.
    a.send(PINGREQ, 0, b"")
    a.expect(PINGRESP)


def test_MQTT_3_1_3_8_empty_client_id_without_clean_session_rejected(raw):
    """MQTT-3.1.3-8: "If the Client supplies a zero-byte ClientId with CleanSession set to 0, the
    Server MUST respond to the CONNECT Packet with a CONNACK return code 0x02 (Identifier rejected)
    and then close the Network Connection"."""
    r = raw(V311)
    present, code, _ = r.connect("", clean=False)
    assert code == 0x02, f"CONNACK return code {code:#x}, expected 0x02"
    r.wait_closed()


def test_MQTT_3_1_4_2_second_connection_takes_session_over(client, raw, version, topic):
    """MQTT-3.1.4-2 (5.0: MQTT-3.1.4-3): "If the ClientId represents a Client already connected to
    the Server then the Server MUST disconnect the existing Client" (MQTT 5: a DISCONNECT sent
    before the close, which 4.13 makes optional, has Reason Code 0x8E, Session taken over)."""
    cid = new_id()
    first = raw(version)
    assert first.connect(cid)[1] == 0
    second = client(version, client_id=cid)
    before_close = first.wait_closed()
    for p in before_close:
        assert p.type == DISCONNECT and version == V5, f"unexpected {p!r} to the old connection"
        assert p.body[:1] == b"\x8e", f"DISCONNECT reason {p.body[:1].hex()}, expected 8e"
    # The new connection is the one that works.
    second.subscribe(f"{topic}/x", 1)
    second.publish(f"{topic}/x", b"still here", qos=1)
    second.messages.wait_payload(b"still here")
    assert second.is_connected()


def test_MQTT_3_1_0_1_first_packet_must_be_connect(raw):
    """MQTT-3.1.0-1: "After a Network Connection is established by a Client to a Server, the first
    Packet sent from the Client to the Server MUST be a CONNECT Packet" (a Server closes a
    connection that breaks this rule, 4.8)."""
    r = raw(V311)
    r.send(PINGREQ, 0, b"")
    got = r.wait_closed()
    assert not any(p.type == PINGRESP for p in got), f"answered a PINGREQ before CONNECT: {got}"


def test_MQTT_3_1_0_2_second_connect_is_a_protocol_violation(raw, version):
    """MQTT-3.1.0-2: "The Server MUST process a second CONNECT Packet sent from a Client as a
    protocol violation and disconnect the Client"."""
    r = raw(version)
    assert r.connect(new_id())[1] == 0
    r.connect(new_id(), expect_connack=False)
    got = r.wait_closed()
    assert not any(p.type == CONNACK for p in got), f"accepted a second CONNECT: {got}"


def test_MQTT_3_1_2_2_unsupported_protocol_level_refused(raw):
    """MQTT-3.1.2-2: "The Server MUST respond to the CONNECT Packet with a CONNACK return code 0x01
    (unacceptable protocol level) and then disconnect the Client if the Protocol Level is not
    supported by the Server"."""
    r = raw(V311)
    present, code, _ = r.connect(new_id(), level=6)
    assert code == 0x01, f"CONNACK return code {code:#x}, expected 0x01"
    r.wait_closed()


def test_MQTT_3_2_2_5_bad_password_refused_and_closed(raw, version, device):
    """MQTT-3.2.2-5 (5.0: MQTT-3.2.2-7), with MQTT-3.2.2-4: "If a server sends a CONNACK packet
    containing a non-zero return code it MUST then close the Network Connection" (and set Session
    Present to 0); the code says bad user name or password (0x04 / 0x86) or not authorized
    (0x05 / 0x87)."""
    user, password, cid = device
    ok = raw(version)
    assert ok.connect(cid, username=user, password=password)[1] == 0, "the right password is refused"
    ok.disconnect()
    bad = raw(version)
    present, code, _ = bad.connect(cid, clean=False, username=user, password=password + "x",
                                   properties=session_props(60) if version == V5 else None)
    allowed = (0x04, 0x05) if version == V311 else (0x86, 0x87)
    assert code in allowed, f"CONNACK {code:#x} for a wrong password, expected one of {allowed}"
    assert present is False
    bad.wait_closed()


def test_MQTT_3_12_4_1_pingreq_answered_with_pingresp(raw, version):
    """MQTT-3.12.4-1: "The Server MUST send a PINGRESP Packet in response to a PINGREQ Packet"."""
    r = raw(version)
    assert r.connect(new_id())[1] == 0
    r.send(PINGREQ, 0, b"")
    assert r.expect(PINGRESP).body == b""


def test_MQTT_3_1_2_24_silent_client_disconnected_and_will_sent(client, raw, version, topic):
    """MQTT-3.1.2-24 (5.0: MQTT-3.1.2-22): "If the Keep Alive value is non-zero and the Server does
    not receive a Control Packet from the Client within one and a half times the Keep Alive time
    period, it MUST disconnect the Network Connection to the Client as if the network had failed"
    (so the Will Message is published, MQTT-3.1.2-8)."""
    watcher = client(version)
    watcher.subscribe(f"{topic}/will", 1)
    silent = raw(version)
    keepalive = 2
    _, code, props = silent.connect(new_id(), keepalive=keepalive,
                                    will={"topic": f"{topic}/will", "payload": b"timed out", "qos": 1})
    assert code == 0
    keepalive = props.get("ServerKeepAlive", keepalive)  # MQTT 5: the server's value rules
    assert keepalive > 0, "the server turned keep alive off"
    silent.wait_closed(timeout=1.5 * keepalive + 6)
    watcher.messages.wait_payload(b"timed out")
