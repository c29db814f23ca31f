"""Will messages (the keep alive case is in test_connect.py)."""

import time

from mqtt_helpers import GRACE, V5, barrier, new_id


def will(topic, payload, qos=1, retain=False):
    return {"topic": topic, "payload": payload, "qos": qos, "retain": retain}


def test_MQTT_3_1_2_8_will_published_on_abrupt_close(client, raw, version, topic):
    """MQTT-3.1.2-8: "If the Will Flag is set to 1 this indicates that, if the Connect request is
    accepted, a Will Message MUST be stored on the Server and associated with the Network
    Connection. The Will Message MUST be published when the Network Connection is subsequently
    closed unless the Will Message has been deleted by the Server on receipt of a DISCONNECT
    Packet"."""
    watcher = client(version)
    watcher.subscribe(f"{topic}/will", 1)
    r = raw(version)
    assert r.connect(new_id(), will=will(f"{topic}/will", b"lost"))[1] == 0
    r.close()
    got = watcher.messages.wait_payload(b"lost")
    assert got.topic == f"{topic}/will" and got.qos == 1


def test_MQTT_3_14_4_3_no_will_after_disconnect(client, raw, version, topic):
    """MQTT-3.14.4-3 (5.0: MQTT-3.14.4-3, Reason Code 0x00): "On receipt of DISCONNECT the Server
    MUST discard any Will Message associated with the current connection without publishing
    it"."""
    watcher = client(version)
    watcher.subscribe(f"{topic}/will", 1)
    r = raw(version)
    assert r.connect(new_id(), will=will(f"{topic}/will", b"must not appear"))[1] == 0
    r.disconnect()
    r.close()
    time.sleep(GRACE)
    barrier(client(version), watcher, f"{topic}/will")
    assert not watcher.messages.matching(lambda m: m.payload == b"must not appear"), \
        "the will was published after a clean DISCONNECT"


def test_MQTT_3_1_2_17_will_retain_publishes_retained_will(client, raw, version, topic):
    """MQTT-3.1.2-17: "If the Will Flag is set to 1 and If Will Retain is set to 1, the Server MUST
    publish the Will Message as a retained message"."""
    watcher = client(version)
    watcher.subscribe(f"{topic}/status", 1)
    r = raw(version)
    assert r.connect(new_id(), will=will(f"{topic}/status", b"offline", retain=True))[1] == 0
    r.close()
    watcher.messages.wait_payload(b"offline")
    late = client(version)
    late.subscribe(f"{topic}/status", 1)
    got = late.messages.wait_payload(b"offline")
    assert got.retain is True


def test_MQTT5_3_1_2_8_will_published_after_disconnect_0x04(client, raw, topic):
    """MQTT 5 MQTT-3.1.2-8: "The Will Message MUST be published after the Network Connection is
    subsequently closed ... unless the Will Message has been deleted by the Server on receipt of a
    DISCONNECT packet with Reason Code 0x00 (Normal disconnection)": a DISCONNECT with 0x04
    (Disconnect with Will Message) keeps it."""
    watcher = client(V5)
    watcher.subscribe(f"{topic}/will", 1)
    r = raw(V5)
    assert r.connect(new_id(), will=will(f"{topic}/will", b"asked for"))[1] == 0
    r.disconnect(0x04)
    r.close()  # MQTT-3.14.4-2: the sender of a DISCONNECT closes the connection
    watcher.messages.wait_payload(b"asked for")
