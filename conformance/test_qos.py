"""QoS 0, 1 and 2: the acknowledgement flows in both directions, delivered QoS, ordering."""

import struct

from mqtt_helpers import PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, V5, barrier, new_id


def reason_of(packet) -> int:
    """The reason code of a PUBACK / PUBREC / PUBREL / PUBCOMP (0 when left out)."""
    return packet.body[2] if len(packet.body) > 2 else 0


def test_MQTT_4_3_2_2_qos1_publish_acknowledged_with_its_packet_id(client, raw, version, topic):
    """MQTT-4.3.2-2 (5.0: MQTT-4.3.2-4): the receiver of a QoS 1 PUBLISH "MUST respond with a PUBACK
    Packet containing the Packet Identifier from the incoming PUBLISH Packet, having accepted
    ownership of the Application Message"."""
    sub = client(version)
    sub.subscribe(f"{topic}/q1", 1)
    pub = raw(version)
    assert pub.connect(new_id())[1] == 0
    pub.publish(f"{topic}/q1", b"one", qos=1, packet_id=0x1234)
    ack = pub.expect(PUBACK)
    assert ack.packet_id == 0x1234, f"PUBACK for {ack.packet_id:#x}, sent 0x1234"
    assert ack.flags == 0, f"PUBACK flags {ack.flags:#x}"
    assert reason_of(ack) < 0x80, f"PUBACK reason {reason_of(ack):#x}"
    got = sub.messages.wait_payload(b"one")
    assert got.qos == 1


def test_MQTT_4_3_3_2_qos2_retried_publish_delivered_once(client, raw, version, topic):
    """MQTT-4.3.3-2 (5.0: MQTT-4.3.3-8, -9): the receiver "MUST respond with a PUBREC containing the
    Packet Identifier from the incoming PUBLISH Packet ... until it has received the corresponding
    PUBREL packet, the Receiver MUST acknowledge any subsequent PUBLISH packet with the same Packet
    Identifier by sending a PUBREC. It MUST NOT cause duplicate messages to be delivered to any
    onward recipients in this case"; and MQTT-3.6.4-1: PUBREL is answered by a PUBCOMP with the
    same Packet Identifier."""
    sub = client(version)
    sub.subscribe(f"{topic}/q2", 2)
    pub = raw(version)
    assert pub.connect(new_id())[1] == 0
    pub.publish(f"{topic}/q2", b"exactly once", qos=2, packet_id=7)
    rec = pub.expect(PUBREC)
    assert rec.packet_id == 7 and reason_of(rec) < 0x80, f"{rec!r}"
    pub.publish(f"{topic}/q2", b"exactly once", qos=2, packet_id=7, dup=True)  # the client retries
    rec = pub.expect(PUBREC)
    # MQTT 5: a failure code (>= 0x80) would tell the client its message failed, though it was taken.
    assert rec.packet_id == 7 and reason_of(rec) < 0x80, f"{rec!r}"
    pub.ack(PUBREL, 7)
    comp = pub.expect(PUBCOMP)
    assert comp.packet_id == 7 and comp.flags == 0 and reason_of(comp) == 0, f"{comp!r}"
    # A second message through the same flow: once it arrived, the first had its chance to double.
    pub.publish(f"{topic}/q2", b"after", qos=2, packet_id=8)
    pub.expect(PUBREC)
    pub.ack(PUBREL, 8)
    pub.expect(PUBCOMP)
    sub.messages.wait_payload(b"after")
    barrier(client(version), sub, f"{topic}/q2", qos=2)
    copies = sub.messages.matching(lambda m: m.payload == b"exactly once")
    assert len(copies) == 1, f"delivered {len(copies)} times"
    assert copies[0].qos == 2


def test_MQTT_3_6_4_1_pubrel_always_answered_with_pubcomp(raw, version):
    """MQTT-3.6.4-1: "When the server receives a PUBREL Packet it MUST respond with a PUBCOMP Packet
    containing the same Packet Identifier as the PUBREL" (also for an identifier it no longer
    holds, as after a retried PUBREL; MQTT 5 may say 0x92, Packet Identifier not found)."""
    r = raw(version)
    assert r.connect(new_id())[1] == 0
    r.ack(PUBREL, 4242)
    comp = r.expect(PUBCOMP)
    assert comp.packet_id == 4242
    assert reason_of(comp) in ((0x00, 0x92) if version == V5 else (0x00,)), f"{comp!r}"


def test_MQTT_4_3_2_1_qos1_delivery_to_subscriber(client, raw, version, topic):
    """MQTT-4.3.2-1 (5.0: MQTT-4.3.2-1): the sender of a QoS 1 message "MUST send a PUBLISH Packet
    containing this Packet Identifier with QoS=1, DUP=0"."""
    r = raw(version)
    assert r.connect(new_id())[1] == 0
    assert r.subscribe(1, [(f"{topic}/q1", 1)]) == [1]
    client(version).publish(f"{topic}/q1", b"to raw", qos=1)
    p = r.parse_publish(r.expect(PUBLISH))
    assert (p.payload, p.qos, p.dup) == (b"to raw", 1, False), f"{p}"
    assert p.packet_id, "a QoS 1 PUBLISH without a packet identifier"
    r.ack(PUBACK, p.packet_id)


def test_MQTT_4_3_3_1_qos2_delivery_to_subscriber(client, raw, version, topic):
    """MQTT-4.3.3-1 (5.0: MQTT-4.3.3-1..-5): the sender of a QoS 2 message "MUST send a PUBLISH packet
    containing this Packet Identifier with QoS=2, DUP=0 ... MUST send a PUBREL packet when it
    receives a PUBREC packet. This PUBREL packet MUST contain the same Packet Identifier as the
    original PUBLISH packet"; MQTT-3.6.1-1: the PUBREL fixed header flags are 0,0,1,0."""
    r = raw(version)
    assert r.connect(new_id())[1] == 0
    assert r.subscribe(1, [(f"{topic}/q2", 2)]) == [2]
    pub = client(version)
    pub.publish(f"{topic}/q2", b"first", qos=2)
    p = r.parse_publish(r.expect(PUBLISH))
    assert (p.payload, p.qos, p.dup) == (b"first", 2, False), f"{p}"
    assert p.packet_id
    r.ack(PUBREC, p.packet_id)
    rel = r.expect(PUBREL)
    assert rel.flags == 0x02, f"PUBREL flags {rel.flags:#x}"
    assert rel.packet_id == p.packet_id
    r.ack(PUBCOMP, p.packet_id)
    pub.publish(f"{topic}/q2", b"second", qos=2)
    nxt = r.parse_publish(r.expect(PUBLISH))
    assert nxt.payload == b"second", f"after PUBCOMP the broker sent {nxt}"


def test_MQTT_3_8_4_6_delivered_qos_is_min_of_published_and_granted(client, version, topic):
    """MQTT-3.8.4-6 (5.0: MQTT-3.8.4-8): "The QoS of Payload Messages sent in response to a
    Subscription MUST be the minimum of the QoS of the originally published message and the
    maximum QoS granted by the Server"."""
    sub = client(version)
    granted = sub.subscribe([(f"{topic}/s{q}", q) for q in (0, 1, 2)])
    assert len(granted) == 3 and all(g <= q for g, q in zip(granted, (0, 1, 2))), f"SUBACK {granted}"
    pub = client(version)
    for s in (0, 1, 2):
        for p in (0, 1, 2):
            pub.publish(f"{topic}/s{s}", f"{p}".encode(), qos=p)
    got = sub.messages.wait(count=9)
    for m in got:
        s, p = int(m.topic[-1]), int(m.payload)
        assert m.qos == min(p, granted[s]), f"published QoS {p}, granted {granted[s]}: delivered {m.qos}"


def test_MQTT_4_6_0_6_topic_is_ordered(client, version, topic):
    """MQTT-4.6.0-6 (5.0: MQTT-4.6.0-6): "A Server MUST by default treat each Topic as an "Ordered
    Topic"" (messages on a topic reach a subscriber in the order they were published)."""
    sub = client(version)
    sub.subscribe(f"{topic}/o", 1)
    pub = client(version)
    for i in range(50):
        pub.publish(f"{topic}/o", struct.pack("!I", i), qos=1, wait=(i == 49))
    got = sub.messages.wait(count=50)
    order = [struct.unpack("!I", m.payload)[0] for m in got]
    assert order == list(range(50)), f"received in the order {order}"
