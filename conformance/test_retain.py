"""Retained messages (MQTT 3.1.1 3.3.1.3; MQTT 5 3.3.1.3 with the default subscription options)."""

from mqtt_helpers import barrier


def late_subscriber(client, version, topic_filter, qos=1, probe_topic=None):
    """A new subscriber to `topic_filter`, and a publisher; once a live message on `probe_topic`
    (default: the filter itself) reached it, every retained message it was due has arrived."""
    sub = client(version)
    sub.subscribe(topic_filter, qos)
    pub = client(version)
    barrier(pub, sub, probe_topic or topic_filter)
    retained = [m for m in sub.messages.snapshot() if not m.payload.startswith(b"barrier-")]
    return sub, retained


def test_MQTT_3_3_1_5_retained_message_stored_with_its_qos(client, version, topic):
    """MQTT-3.3.1-5 (5.0: MQTT-3.3.1-5): "If the RETAIN flag is set to 1, in a PUBLISH Packet sent
    by a Client to a Server, the Server MUST store the Application Message and its QoS, so that it
    can be delivered to future subscribers whose subscriptions match its topic name"."""
    client(version).publish(f"{topic}/r", b"kept", qos=1, retain=True)
    _, at1 = late_subscriber(client, version, f"{topic}/r", qos=1)
    _, at0 = late_subscriber(client, version, f"{topic}/r", qos=0)
    assert [(m.payload, m.qos) for m in at1] == [(b"kept", 1)], f"QoS 1 subscriber got {at1}"
    assert [(m.payload, m.qos) for m in at0] == [(b"kept", 0)], f"QoS 0 subscriber got {at0}"


def test_MQTT_3_3_1_6_retained_to_new_subscriber(client, version, topic):
    """MQTT-3.3.1-6 (5.0: MQTT-3.3.1-9 with Retain Handling 0): "When a new subscription is
    established, the last retained message, if any, on each matching topic name MUST be sent to
    the subscriber"."""
    pub = client(version)
    pub.publish(f"{topic}/a", b"a1", qos=1, retain=True)
    pub.publish(f"{topic}/a", b"a2", qos=1, retain=True)
    pub.publish(f"{topic}/b/c", b"bc", qos=1, retain=True)
    _, got = late_subscriber(client, version, f"{topic}/#", probe_topic=f"{topic}/probe")
    assert sorted((m.topic, m.payload) for m in got) == [(f"{topic}/a", b"a2"), (f"{topic}/b/c", b"bc")], \
        f"a new subscriber to {topic}/# got {got}"


def test_MQTT_3_3_1_8_retain_flag_set_on_delivery_to_new_subscription(client, version, topic):
    """MQTT-3.3.1-8: "When sending a PUBLISH Packet to a Client the Server MUST set the RETAIN flag
    to 1 if a message is sent as a result of a new subscription being made by a Client"."""
    client(version).publish(f"{topic}/r", b"status", qos=1, retain=True)
    sub = client(version)
    sub.subscribe(f"{topic}/r", 1)
    got = sub.messages.wait_payload(b"status")
    assert got.retain is True, "a retained message sent on subscription has RETAIN 0"


def test_MQTT_3_3_1_9_retain_flag_cleared_on_live_forwarding(client, version, topic):
    """MQTT-3.3.1-9 (5.0: MQTT-3.3.1-12, Retain As Published 0): "It MUST set the RETAIN flag to 0
    when a PUBLISH Packet is sent to a Client because it matches an established subscription
    regardless of how the flag was set in the message it received"."""
    sub = client(version)
    sub.subscribe(f"{topic}/r", 1)
    client(version).publish(f"{topic}/r", b"live", qos=1, retain=True)
    got = sub.messages.wait_payload(b"live")
    assert got.retain is False, "a live message was forwarded with RETAIN 1"


def test_MQTT_3_3_1_7_qos0_retained_message_replaces(client, version, topic):
    """MQTT-3.3.1-7: "If the Server receives a QoS 0 message with the RETAIN flag set to 1 it MUST
    discard any message previously retained for that topic. It SHOULD store the new QoS 0 message
    as the new retained message for that topic"."""
    pub = client(version)
    pub.publish(f"{topic}/r", b"old", qos=1, retain=True)
    pub.publish(f"{topic}/r", b"new", qos=0, retain=True)
    _, got = late_subscriber(client, version, f"{topic}/r")
    assert [m.payload for m in got] == [b"new"], f"after a QoS 0 retained replacement: {got}"


def test_MQTT_3_3_1_10_empty_retained_publish_clears_and_is_forwarded(client, version, topic):
    """MQTT-3.3.1-10 (5.0: MQTT-3.3.1-6): "A PUBLISH Packet with a RETAIN flag set to 1 and a payload
    containing zero bytes will be processed as normal by the Server and sent to Clients with a
    subscription matching the topic name. Additionally any existing retained message with the same
    topic name MUST be removed and any future subscribers for the topic will not receive a retained
    message"."""
    watcher = client(version)
    watcher.subscribe(f"{topic}/r", 1)
    pub = client(version)
    pub.publish(f"{topic}/r", b"there", qos=1, retain=True)
    pub.publish(f"{topic}/r", b"", qos=1, retain=True)
    watcher.messages.wait(lambda m: m.payload == b"")  # forwarded as normal
    _, got = late_subscriber(client, version, f"{topic}/r")
    assert got == [], f"a cleared retained topic still delivered {got}"


def test_MQTT_3_3_1_11_zero_byte_retained_message_not_stored(client, version, topic):
    """MQTT-3.3.1-11 (5.0: MQTT-3.3.1-7): "A zero byte retained message MUST NOT be stored as a
    retained message on the Server"."""
    client(version).publish(f"{topic}/r", b"", qos=1, retain=True)
    _, got = late_subscriber(client, version, f"{topic}/r")
    assert got == [], f"a zero byte retained message was delivered as retained: {got}"


def test_MQTT_3_3_1_12_non_retained_publish_keeps_retained_message(client, version, topic):
    """MQTT-3.3.1-12 (5.0: MQTT-3.3.1-8): "If the RETAIN flag is 0, in a PUBLISH Packet sent by a
    Client to a Server, the Server MUST NOT store the message and MUST NOT remove or replace any
    existing retained message"."""
    pub = client(version)
    pub.publish(f"{topic}/r", b"retained", qos=1, retain=True)
    pub.publish(f"{topic}/r", b"not retained", qos=1, retain=False)
    _, got = late_subscriber(client, version, f"{topic}/r")
    assert [m.payload for m in got] == [b"retained"], f"got {got}"


def test_MQTT_3_8_4_3_resubscribe_resends_retained(client, version, topic):
    """MQTT-3.8.4-3 (5.0: MQTT-3.8.4-3 with Retain Handling 0): on a SUBSCRIBE whose Topic Filter is
    identical to an existing Subscription's, "any existing retained messages matching the Topic
    Filter MUST be re-sent, but the flow of publications MUST NOT be interrupted"."""
    pub = client(version)
    pub.publish(f"{topic}/r", b"state", qos=1, retain=True)
    sub = client(version)
    sub.subscribe(f"{topic}/r", 1)
    sub.messages.wait_payload(b"state")
    sub.subscribe(f"{topic}/r", 1)
    got = sub.messages.wait(lambda m: m.payload == b"state", count=2)
    assert all(m.retain for m in got)
