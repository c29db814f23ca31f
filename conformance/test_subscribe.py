"""SUBSCRIBE / SUBACK, topic filters and wildcards, refusal by ACL, UNSUBSCRIBE / UNSUBACK."""

import struct

from mqtt_helpers import PUBACK, UNSUBACK, UNSUBSCRIBE, V311, V5, barrier, new_id, utf8


def test_MQTT_3_8_4_2_suback_has_the_subscribe_packet_id(raw, version, topic):
    """MQTT-3.8.4-1, -2: "When the Server receives a SUBSCRIBE Packet from a Client, the Server MUST
    respond with a SUBACK Packet"; "The SUBACK Packet MUST have the same Packet Identifier as the
    SUBSCRIBE Packet that it is acknowledging"."""
    r = raw(version)
    assert r.connect(new_id())[1] == 0
    assert r.subscribe(0x4321, [(f"{topic}/x", 1)]) == [1]  # the raw client checks the identifier


def test_MQTT_3_8_4_5_suback_has_a_code_per_filter_in_order(client, version, topic):
    """MQTT-3.8.4-5 (5.0: MQTT-3.8.4-6, -7, MQTT-3.9.3-1): "The SUBACK Packet sent by the Server to
    the Client MUST contain a return code for each Topic Filter/QoS pair. This return code MUST
    either show the maximum QoS that was granted for that Subscription or indicate that the
    subscription failed" (granted QoS is at most the requested)."""
    c = client(version)
    asked = [2, 0, 1, 2]
    codes = c.subscribe([(f"{topic}/f{i}", q) for i, q in enumerate(asked)])
    assert len(codes) == len(asked), f"SUBACK codes {codes} for {len(asked)} filters"
    assert all(g <= q for g, q in zip(codes, asked)), f"granted {codes} for requested {asked}"


def acl_subscription(client, version, device):
    """The restricted user subscribed to its own tree and to two filters it may not have."""
    user, password, cid = device
    uid = new_id("u")
    d = client(version, client_id=cid, username=user, password=password)
    codes = d.subscribe([(f"devices/{user}/{uid}/#", 1), (f"other/{uid}/#", 1), (f"devices/+/{uid}", 1)])
    return d, codes, f"devices/{user}/{uid}", uid


def test_MQTT_3_8_4_5_acl_refused_filter_gets_failure_code(client, version, device):
    """MQTT-3.8.4-5 (5.0: MQTT-3.8.4-7, Reason Code 0x87 Not authorized): the SUBACK return code
    MUST "indicate that the subscription failed" (0x80) for a filter the client may not subscribe
    to; the filter it may have in the same SUBSCRIBE is granted."""
    _, codes, _, _ = acl_subscription(client, version, device)
    refused = 0x80 if version == V311 else 0x87
    assert codes == [1, refused, refused], f"SUBACK {[hex(c) for c in codes]}, expected [0x1, {refused:#x}, {refused:#x}]"


def test_MQTT_3_8_4_5_acl_refused_filter_delivers_nothing(client, version, device):
    """MQTT-3.8.4-5: a filter the client may not subscribe to is not a subscription ("the
    subscription failed"): nothing published under it reaches the client, while its allowed
    filter from the same SUBSCRIBE delivers."""
    d, codes, own, uid = acl_subscription(client, version, device)
    assert codes[0] == 1, f"the allowed filter was refused: {codes}"
    pub = client(version)
    pub.publish(f"other/{uid}/x", b"not for d-1", qos=1)
    pub.publish(f"devices/elsewhere/{uid}", b"not for d-1 either", qos=1)
    pub.publish(f"{own}/x", b"for d-1", qos=1)
    d.messages.wait_payload(b"for d-1")
    barrier(pub, d, f"{own}/y")
    assert [m.topic for m in d.messages.snapshot() if not m.topic.startswith(own)] == [], \
        "messages arrived through a refused subscription"


def test_MQTT_3_3_5_2_unauthorized_publish_is_not_forwarded(client, raw, version, device, topic):
    """MQTT-3.3.5-2: "If a Server implementation does not authorize a PUBLISH to be performed by a
    Client; it has no way of informing that Client. It MUST either make a positive acknowledgement,
    according to the normal QoS rules, or close the Network Connection" (MQTT 5: PUBACK with
    Reason Code 0x87 Not authorized); the message reaches no subscriber."""
    user, password, cid = device
    uid = new_id("u")
    watcher = client(version)
    watcher.subscribe(f"other/{uid}/#", 1)
    watcher.subscribe(f"devices/{user}/{uid}/#", 1)
    d = raw(version)
    assert d.connect(cid, username=user, password=password)[1] == 0
    d.publish(f"devices/{user}/{uid}/ok", b"allowed", qos=1, packet_id=1)
    assert d.expect(PUBACK).packet_id == 1
    watcher.messages.wait_payload(b"allowed")
    d.publish(f"other/{uid}/x", b"refused", qos=1, packet_id=2)
    try:
        ack = d.expect(PUBACK)
    except AssertionError:
        ack = None
        assert version == V311, "an MQTT 5 client must get a PUBACK with a reason code"
        d.wait_closed()  # the other choice MQTT 3.1.1 leaves
    if ack is not None:
        assert ack.packet_id == 2
        reason = ack.body[2] if len(ack.body) > 2 else 0
        assert reason == (0 if version == V311 else 0x87), f"PUBACK reason {reason:#x}"
    barrier(client(version), watcher, f"other/{uid}/x")
    assert not watcher.messages.matching(lambda m: m.payload == b"refused"), \
        "an unauthorized publish was forwarded"


def matched(client, version, topic, filter_, end, topics):
    """Subscribes to `{topic}/{filter_}`, publishes each of `topics` (under `{topic}/`, its name as
    the payload), and returns the payloads that arrived, sorted (`end` is a topic the filter matches,
    for the barrier)."""
    sub = client(version)
    sub.subscribe(f"{topic}/{filter_}", 1)
    pub = client(version)
    for t in topics:
        pub.publish(f"{topic}/{t}", t.encode(), qos=1)
    barrier(pub, sub, f"{topic}/{end}")
    return sorted(m.payload for m in sub.messages.snapshot() if not m.payload.startswith(b"barrier-"))


def test_MQTT_4_7_1_2_multi_level_wildcard(client, version, topic):
    """MQTT-4.7.1-2: "The multi-level wildcard character MUST be specified either on its own or
    following a topic level separator. In either case it MUST be the last character specified in
    the Topic Filter"; "sport/#" also matches the parent level "sport" (4.7.1.2)."""
    got = matched(client, version, topic, "sport/#", "sport/end",
                  ("sport", "sport/tennis", "sport/tennis/player1", "sports", "other/sport"))
    assert got == [b"sport", b"sport/tennis", b"sport/tennis/player1"], f"{topic}/sport/# matched {got}"


def test_MQTT_4_7_1_3_single_level_wildcard(client, version, topic):
    """MQTT-4.7.1-3: "The single-level wildcard can be used at any level in the Topic Filter,
    including first and last levels. Where it is used it MUST occupy an entire level of the
    filter"; it matches exactly one level, which may be empty (4.7.1.3)."""
    got = matched(client, version, topic, "+/player", "end/player",
                  ("tennis/player", "/player", "tennis/x/player", "player", "tennis/player/x"))
    assert got == [b"/player", b"tennis/player"], f"{topic}/+/player matched {got}"


def test_MQTT_4_7_2_1_wildcards_do_not_match_dollar_topics(client, version):
    """MQTT-4.7.2-1: "The Server MUST NOT match Topic Filters starting with a wildcard character (#
    or +) with Topic Names beginning with a $ character"."""
    uid = new_id("u")
    wild = client(version)
    wild.subscribe([("#", 1), (f"+/{uid}/x", 1)])
    exact = client(version)
    exact.subscribe(f"$conformance/{uid}/x", 1)
    pub = client(version)
    pub.publish(f"$conformance/{uid}/x", b"dollar", qos=1)
    exact.messages.wait_payload(b"dollar")
    barrier(pub, wild, f"plain/{uid}/x")
    assert not wild.messages.matching(lambda m: m.topic.startswith("$")), \
        f"wildcards matched $ topics: {[m.topic for m in wild.messages.matching(lambda m: m.topic.startswith('$'))]}"


def test_MQTT_3_3_5_1_overlapping_subscriptions_get_maximum_qos(client, version, topic):
    """MQTT-3.3.5-1 (5.0: MQTT-3.3.4-2): "the Server MUST deliver the message to the Client
    respecting the maximum QoS of all the matching subscriptions"."""
    sub = client(version)
    assert sub.subscribe([(f"{topic}/#", 0), (f"{topic}/x", 2)]) == [0, 2]
    pub = client(version)
    pub.publish(f"{topic}/x", b"overlap", qos=2)
    sub.messages.wait_payload(b"overlap")
    barrier(pub, sub, f"{topic}/x")
    copies = sub.messages.matching(lambda m: m.payload == b"overlap")
    assert 1 <= len(copies) <= 2, f"{len(copies)} copies for two matching subscriptions"
    assert max(m.qos for m in copies) == 2, f"delivered at QoS {[m.qos for m in copies]}"


def test_MQTT_3_8_4_3_resubscribe_replaces_subscription(client, version, topic):
    """MQTT-3.8.4-3: "If a Server receives a SUBSCRIBE Packet containing a Topic Filter that is
    identical to an existing Subscription's Topic Filter then it MUST completely replace that
    existing Subscription with a new Subscription" (one copy, at the new QoS)."""
    sub = client(version)
    sub.subscribe(f"{topic}/x", 2)
    sub.subscribe(f"{topic}/x", 0)
    pub = client(version)
    pub.publish(f"{topic}/x", b"once", qos=2)
    sub.messages.wait_payload(b"once")
    barrier(pub, sub, f"{topic}/x")
    copies = sub.messages.matching(lambda m: m.payload == b"once")
    assert [m.qos for m in copies] == [0], f"after re-subscribing at QoS 0: {[m.qos for m in copies]}"


def test_MQTT_3_10_4_4_unsuback_has_the_unsubscribe_packet_id(raw, version, topic):
    """MQTT-3.10.4-4: "The Server MUST respond to an UNSUBSUBCRIBE request by sending an UNSUBACK
    packet. The UNSUBACK Packet MUST have the same Packet Identifier as the UNSUBSCRIBE Packet"."""
    r = raw(version)
    assert r.connect(new_id())[1] == 0
    r.subscribe(1, [(f"{topic}/x", 1)])
    props = b"\x00" if version == V5 else b""
    r.send(UNSUBSCRIBE, 0x02, struct.pack("!H", 0x2222) + props + utf8(f"{topic}/x"))
    ack = r.expect(UNSUBACK)
    assert ack.packet_id == 0x2222, f"UNSUBACK for {ack.packet_id:#x}, sent 0x2222"
    if version == V5:
        assert ack.body[-1:] == b"\x00", f"UNSUBACK reason {ack.body[-1:].hex()} for a held filter"


def test_MQTT_3_10_4_2_no_delivery_after_unsubscribe(client, version, topic):
    """MQTT-3.10.4-2: "If a Server deletes a Subscription: It MUST stop adding any new messages for
    delivery to the Client"."""
    sub = client(version)
    sub.subscribe([(f"{topic}/a", 1), (f"{topic}/b", 1)])
    sub.unsubscribe(f"{topic}/a")
    pub = client(version)
    pub.publish(f"{topic}/a", b"unsubscribed", qos=1)
    barrier(pub, sub, f"{topic}/b")
    assert not sub.messages.matching(lambda m: m.topic == f"{topic}/a"), "delivered after UNSUBACK"


def test_MQTT_3_10_4_1_unsubscribe_compares_filters_character_by_character(client, version, topic):
    """MQTT-3.10.4-1: "The Topic Filters (whether they contain wildcards or not) supplied in an
    UNSUBSCRIBE packet MUST be compared character-by-character with the current set of Topic
    Filters held by the Server for the Client. If any filter matches exactly then its owning
    Subscription is deleted"."""
    sub = client(version)
    sub.subscribe(f"{topic}/#", 1)
    sub.unsubscribe([f"{topic}/+", f"{topic}/x"])  # neither is held, though both overlap it
    pub = client(version)
    pub.publish(f"{topic}/x", b"still subscribed", qos=1)
    sub.messages.wait_payload(b"still subscribed")
    sub.unsubscribe(f"{topic}/#")
    pub.publish(f"{topic}/x", b"gone", qos=1)
    probe = client(version)
    probe.subscribe(f"{topic}/x", 1)
    barrier(pub, probe, f"{topic}/x")
    assert not sub.messages.matching(lambda m: m.payload == b"gone")


def test_MQTT_3_10_4_5_unsuback_even_when_nothing_was_subscribed(client, version, topic):
    """MQTT-3.10.4-5: "Even where no Topic Subscriptions are deleted, the Server MUST respond with an
    UNSUBACK" (MQTT 5: Reason Code 0x00 or 0x11, No subscription existed)."""
    c = client(version)
    codes = c.unsubscribe(f"{topic}/never")
    if version == V5:
        assert codes and all(code in (0x00, 0x11) for code in codes), f"UNSUBACK {codes}"
