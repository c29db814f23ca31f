"""Persistent sessions: clean session 0 (3.1.1) / a session expiry above 0 with clean start 0 (5)."""

import time

from mqtt_helpers import PUBACK, PUBLISH, V5, barrier, new_id
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PERSISTENT = dict(clean=False, session_expiry=300)


def connect_props(expiry):
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = expiry
    return p


def assert_no_session(client, version, cid, topic, why):
    """Checks that client id `cid` (subscribed to `{topic}/x` in its last session) has no session
    now: it reconnects without one and gets nothing published to `{topic}/x` meanwhile."""
    pub = client(version)
    pub.publish(f"{topic}/x", b"for a session that is gone", qos=1)
    again = client(version, client_id=cid, **PERSISTENT)
    assert again.connack[0] is False, why
    again.subscribe(f"{topic}/y", 1)
    barrier(pub, again, f"{topic}/y")
    assert not again.messages.matching(lambda m: m.topic == f"{topic}/x")


def test_MQTT_3_1_2_4_resumed_session_keeps_subscriptions(client, version, topic):
    """MQTT-3.1.2-4 (5.0: MQTT-3.1.2-4, -5): "If CleanSession is set to 0, the Server MUST resume
    communications with the Client based on state from the current Session (as identified by the
    Client identifier)" (its subscriptions included)."""
    cid = new_id()
    first = client(version, client_id=cid, **PERSISTENT)
    first.subscribe(f"{topic}/x", 1)
    first.disconnect()
    again = client(version, client_id=cid, **PERSISTENT)
    assert again.connack[0] is True
    client(version).publish(f"{topic}/x", b"no need to subscribe again", qos=1)
    again.messages.wait_payload(b"no need to subscribe again")


def test_MQTT_3_1_2_5_messages_published_while_away_are_delivered(client, version, topic):
    """MQTT-3.1.2-5 (5.0: 3.1.2.11.2, MQTT-4.6.0-6 order): "After the disconnection of a Session that
    had CleanSession set to 0, the Server MUST store further QoS 1 and QoS 2 messages that match any
    subscriptions that the client had at the time of disconnection as part of the Session state"."""
    cid = new_id()
    first = client(version, client_id=cid, **PERSISTENT)
    first.subscribe([(f"{topic}/q1", 1), (f"{topic}/q2", 2)])
    first.disconnect()
    pub = client(version)
    for i in range(10):
        pub.publish(f"{topic}/q1", f"one-{i}".encode(), qos=1)
        pub.publish(f"{topic}/q2", f"two-{i}".encode(), qos=2)
    again = client(version, client_id=cid, connect=False, **PERSISTENT)
    assert again.connect()[0] is True, "Session Present 0 after an offline period"
    q1 = again.messages.wait_topic(f"{topic}/q1", count=10)
    q2 = again.messages.wait_topic(f"{topic}/q2", count=10)
    assert [m.payload for m in q1] == [f"one-{i}".encode() for i in range(10)]
    assert [m.payload for m in q2] == [f"two-{i}".encode() for i in range(10)]
    assert [m.qos for m in q1] == [1] * 10 and [m.qos for m in q2] == [2] * 10
    barrier(pub, again, f"{topic}/q1")
    assert len(again.messages.snapshot()) == 21, "messages were delivered twice"


def test_MQTT_3_1_2_6_clean_session_discards_the_stored_session(client, version, topic):
    """MQTT-3.1.2-6 (5.0: MQTT-3.1.2-4): "If CleanSession is set to 1, the Client and Server MUST
    discard any previous Session and start a new one"."""
    cid = new_id()
    first = client(version, client_id=cid, **PERSISTENT)
    first.subscribe(f"{topic}/x", 1)
    first.disconnect()
    clean = client(version, client_id=cid, clean=True)
    assert clean.connack[0] is False
    clean.disconnect()
    assert_no_session(client, version, cid, topic, "the discarded session came back")


def test_MQTT_4_4_0_1_unacknowledged_publish_resent_on_reconnect(client, raw, version, topic):
    """MQTT-4.4.0-1 (5.0: MQTT-4.4.0-1), MQTT-3.3.1-1: "When a Client reconnects with CleanSession set
    to 0, both the Client and Server MUST re-send any unacknowledged PUBLISH Packets (where QoS > 0)
    and PUBREL Packets using their original Packet Identifiers"; "The DUP flag MUST be set to 1 by
    the Client or Server when it attempts to re-deliver a PUBLISH Packet"."""
    cid = new_id()
    props = connect_props(300) if version == V5 else None
    r = raw(version)
    assert r.connect(cid, clean=False, properties=props)[1] == 0
    r.subscribe(1, [(f"{topic}/x", 1)])
    client(version).publish(f"{topic}/x", b"unacked", qos=1)
    first = r.parse_publish(r.expect(PUBLISH))
    assert first.payload == b"unacked"
    r.close()  # no PUBACK
    time.sleep(0.3)
    r2 = raw(version)
    present, code, _ = r2.connect(cid, clean=False, properties=props)
    assert code == 0 and present is True
    again = r2.parse_publish(r2.expect(PUBLISH))
    assert again.payload == b"unacked", f"re-sent {again}"
    assert again.packet_id == first.packet_id, f"packet id {again.packet_id}, was {first.packet_id}"
    assert again.dup is True, "a re-delivered PUBLISH without DUP"
    r2.ack(PUBACK, again.packet_id)


def test_MQTT5_3_1_2_23_session_expiry_0_ends_session_at_disconnect(client, topic):
    """MQTT 5 MQTT-3.1.2-23: "The Client and Server MUST store the Session State after the Network
    Connection is closed if the Session Expiry Interval is greater than 0"; absent or 0, "the
    Session ends when the Network Connection is closed" (3.1.2.11.2)."""
    cid = new_id()
    first = client(V5, client_id=cid, clean=False, session_expiry=0)
    first.subscribe(f"{topic}/x", 1)
    first.disconnect()
    assert_no_session(client, V5, cid, topic, "a session with expiry 0 outlived its connection")


def test_MQTT5_3_1_2_23_session_expires_after_its_interval(client, topic):
    """MQTT 5 3.1.2.11.2 / MQTT-3.1.2-23: the Session State is kept after the Network Connection
    closes for the Session Expiry Interval, and no longer: "The Session State in the Server is
    discarded when ... the Session Expiry Interval has passed" (4.1)."""
    cid = new_id()
    first = client(V5, client_id=cid, clean=False, session_expiry=1)
    first.subscribe(f"{topic}/x", 1)
    first.disconnect()
    time.sleep(3)
    again = client(V5, client_id=cid, **PERSISTENT)
    assert again.connack[0] is False, "the session outlived its 1 s expiry interval by 3 s"
