"""MQTT 5 only: message expiry, topic aliases, user and other properties, request/response,
no local, retain as published, retain handling, shared subscriptions."""

import time

from mqtt_helpers import PUBACK, V5, barrier, new_id, publish_props, sub_options
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PERSISTENT = dict(clean=False, session_expiry=300)


def test_MQTT5_3_3_2_5_expired_message_not_delivered_to_waiting_session(client, topic):
    """MQTT 5 MQTT-3.3.2-5: "If the Message Expiry Interval has passed and the Server has not managed
    to start onward delivery to a matching subscriber, then it MUST delete the copy of the message
    for that subscriber"."""
    cid = new_id()
    sub = client(V5, client_id=cid, **PERSISTENT)
    sub.subscribe(f"{topic}/x", 1)
    sub.disconnect()
    pub = client(V5)
    pub.publish(f"{topic}/x", b"expires", qos=1, properties=publish_props(MessageExpiryInterval=1))
    pub.publish(f"{topic}/x", b"keeps", qos=1)
    time.sleep(2.5)
    again = client(V5, client_id=cid, **PERSISTENT)
    assert again.connack[0] is True
    again.messages.wait_payload(b"keeps")
    assert not again.messages.matching(lambda m: m.payload == b"expires"), \
        "a message past its expiry interval was delivered"


def test_MQTT5_3_3_2_5_expired_retained_message_not_delivered(client, topic):
    """MQTT 5 MQTT-3.3.2-5 (3.3.2.3.3: a retained message whose Message Expiry Interval has passed
    is not delivered to a new subscriber): "If the Message Expiry Interval has passed and the Server
    has not managed to start onward delivery to a matching subscriber, then it MUST delete the copy
    of the message for that subscriber"."""
    pub = client(V5)
    pub.publish(f"{topic}/r", b"stale", qos=1, retain=True, properties=publish_props(MessageExpiryInterval=1))
    time.sleep(2.5)
    sub = client(V5)
    sub.subscribe(f"{topic}/r", 1)
    barrier(pub, sub, f"{topic}/r")
    assert not sub.messages.matching(lambda m: m.payload == b"stale"), "an expired retained message was sent"


def test_MQTT5_3_3_2_6_expiry_interval_reduced_by_time_waited(client, topic):
    """MQTT 5 MQTT-3.3.2-6: "The PUBLISH packet sent to a Client by the Server MUST contain a Message
    Expiry Interval set to the received value minus the time that the Application Message has been
    waiting in the Server"."""
    cid = new_id()
    sub = client(V5, client_id=cid, **PERSISTENT)
    sub.subscribe(f"{topic}/x", 1)
    sub.disconnect()
    client(V5).publish(f"{topic}/x", b"waits", qos=1, properties=publish_props(MessageExpiryInterval=60))
    time.sleep(2.2)
    again = client(V5, client_id=cid, **PERSISTENT)
    got = again.messages.wait_payload(b"waits")
    left = got.props.get("MessageExpiryInterval")
    assert left is not None, "the Message Expiry Interval was dropped"
    assert 0 < left < 60, f"Message Expiry Interval {left} after waiting 2 s of 60"


def test_MQTT5_3_3_2_6_no_expiry_interval_added_when_absent(client, topic):
    """MQTT 5 MQTT-3.3.2-6 and 3.3.2.3.3: the forwarded Message Expiry Interval is "set to the
    received value minus the time that the Application Message has been waiting in the Server";
    "If absent, the Application Message does not expire" (so none is sent on)."""
    sub = client(V5)
    sub.subscribe(f"{topic}/x", 1)
    client(V5).publish(f"{topic}/x", b"forever", qos=1)
    got = sub.messages.wait_payload(b"forever")
    assert "MessageExpiryInterval" not in got.props, \
        f"a message published without expiry arrived with Message Expiry Interval {got.props['MessageExpiryInterval']}"


def test_MQTT5_3_3_2_12_topic_alias_from_client_accepted(client, topic):
    """MQTT 5 MQTT-3.3.2-12: "A Server MUST accept all Topic Alias values greater than 0 and less
    than or equal to the Topic Alias Maximum value that it returned in the CONNACK packet" (a
    PUBLISH with an empty Topic Name and a known alias goes to the aliased topic; an alias can be
    mapped again)."""
    sub = client(V5)
    sub.subscribe(f"{topic}/#", 1)
    pub = client(V5)
    maximum = pub.connack[2].get("TopicAliasMaximum", 0)
    assert maximum >= 1, "the server allows no topic aliases (Topic Alias Maximum 0)"
    pub.publish(f"{topic}/a", b"set", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("", b"by alias", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish(f"{topic}/b", b"remapped", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("", b"by new alias", qos=1, properties=publish_props(TopicAlias=1))
    if maximum >= 2:
        pub.publish(f"{topic}/c", b"second alias", qos=1, properties=publish_props(TopicAlias=maximum))
        pub.publish("", b"by second alias", qos=1, properties=publish_props(TopicAlias=maximum))
    got = {m.payload: m.topic for m in sub.messages.wait(count=6 if maximum >= 2 else 4)}
    assert got[b"set"] == f"{topic}/a" and got[b"by alias"] == f"{topic}/a", f"{got}"
    assert got[b"remapped"] == f"{topic}/b" and got[b"by new alias"] == f"{topic}/b", f"{got}"
    if maximum >= 2:
        assert got[b"by second alias"] == f"{topic}/c", f"{got}"


def test_MQTT5_3_3_2_7_topic_alias_not_carried_to_a_new_connection(client, raw, topic):
    """MQTT 5 MQTT-3.3.2-7: "A receiver MUST NOT carry forward any Topic Alias mappings from one
    Network Connection to another" (an unknown alias is a Protocol Error: the connection closes,
    nothing is forwarded)."""
    sub = client(V5)
    sub.subscribe(f"{topic}/#", 1)
    cid = new_id()
    first = client(V5, client_id=cid)
    first.publish(f"{topic}/a", b"mapped", qos=1, properties=publish_props(TopicAlias=1))
    first.disconnect()
    r = raw(V5)
    assert r.connect(cid)[1] == 0
    r.publish("", b"stale alias", qos=1, packet_id=1, properties=publish_props(TopicAlias=1))
    got = r.wait_closed()
    accepted = [p for p in got if p.type == PUBACK and (len(p.body) <= 2 or p.body[2] < 0x80)]
    assert not accepted, f"a PUBLISH on an alias of another connection was accepted: {got}"
    barrier(client(V5), sub, f"{topic}/a")
    assert not sub.messages.matching(lambda m: m.payload == b"stale alias")


def test_MQTT5_3_3_2_17_user_properties_forwarded_unaltered_in_order(client, topic):
    """MQTT 5 MQTT-3.3.2-17, -18: "The Server MUST send all User Properties unaltered in a PUBLISH
    packet when forwarding the Application Message to a Client"; "The Server MUST maintain the
    order of User Properties when forwarding the Application Message"."""
    sub = client(V5)
    sub.subscribe(f"{topic}/x", 1)
    pairs = [("site", "lab"), ("b", "2"), ("a", "1"), ("a", "0"), ("unicode", "grüße ✓")]
    client(V5).publish(f"{topic}/x", b"props", qos=1, properties=publish_props(UserProperty=pairs))
    got = sub.messages.wait_payload(b"props")
    assert got.props.get("UserProperty") == pairs, f"user properties arrived as {got.props.get('UserProperty')}"


def test_MQTT5_3_3_2_15_request_response_topic_and_correlation_data(client, topic):
    """MQTT 5 MQTT-3.3.2-15, -16: "The Server MUST send the Response Topic unaltered to all
    subscribers receiving the Application Message"; "The Server MUST send the Correlation Data
    unaltered to all subscribers receiving the Application Message" (a request and its response)."""
    responder = client(V5)
    responder.subscribe(f"{topic}/req", 1)
    requester = client(V5)
    requester.subscribe(f"{topic}/resp/{requester.client_id}", 1)
    corr = bytes(range(256))[::-1][:40]
    requester.publish(f"{topic}/req", b"what time is it", qos=1,
                      properties=publish_props(ResponseTopic=f"{topic}/resp/{requester.client_id}",
                                               CorrelationData=corr))
    req = responder.messages.wait_payload(b"what time is it")
    assert req.props.get("ResponseTopic") == f"{topic}/resp/{requester.client_id}", f"{req.props}"
    assert req.props.get("CorrelationData") == corr, f"{req.props}"
    responder.publish(req.props["ResponseTopic"], b"noon", qos=1,
                      properties=publish_props(CorrelationData=req.props["CorrelationData"]))
    resp = requester.messages.wait_payload(b"noon")
    assert resp.props.get("CorrelationData") == corr


def test_MQTT5_3_3_2_4_payload_format_and_content_type_forwarded(client, topic):
    """MQTT 5 MQTT-3.3.2-4, -20: "A Server MUST send the Payload Format Indicator unaltered to all
    subscribers receiving the Application Message"; "A Server MUST send the Content Type unaltered
    to all subscribers receiving the Application Message"."""
    sub = client(V5)
    sub.subscribe(f"{topic}/x", 1)
    client(V5).publish(f"{topic}/x", b'{"t": 21.5}', qos=1,
                       properties=publish_props(PayloadFormatIndicator=1, ContentType="application/json"))
    got = sub.messages.wait_payload(b'{"t": 21.5}')
    assert got.props.get("PayloadFormatIndicator") == 1, f"{got.props}"
    assert got.props.get("ContentType") == "application/json", f"{got.props}"


def test_MQTT5_3_8_3_3_no_local(client, topic):
    """MQTT 5 MQTT-3.8.3-3: "Bit 2 of the Subscription Options represents the No Local option. If the
    value is 1, Application Messages MUST NOT be forwarded to a connection with a ClientID equal to
    the ClientID of the publishing connection"."""
    me = client(V5)
    me.subscribe(f"{topic}/x", options=sub_options(1, no_local=True))
    me.subscribe(f"{topic}/echo", options=sub_options(1))
    other = client(V5)
    other.subscribe(f"{topic}/x", 1)
    me.publish(f"{topic}/x", b"from me", qos=1)
    other.messages.wait_payload(b"from me")  # the message went out
    other.publish(f"{topic}/x", b"from other", qos=1)
    me.messages.wait_payload(b"from other")  # a No Local subscription still gets others' messages
    barrier(me, me, f"{topic}/echo")
    assert not me.messages.matching(lambda m: m.payload == b"from me"), "No Local echoed my own message"


def test_MQTT5_3_3_1_12_retain_as_published_0_clears_retain(client, topic):
    """MQTT 5 MQTT-3.3.1-12: "If the value of Retain As Published subscription option is set to 0,
    the Server MUST set the RETAIN flag to 0 when forwarding an Application Message regardless of
    how the RETAIN flag was set in the received PUBLISH packet"."""
    sub = client(V5)
    sub.subscribe(f"{topic}/x", options=sub_options(1, retain_as_published=False))
    client(V5).publish(f"{topic}/x", b"retained", qos=1, retain=True)
    assert sub.messages.wait_payload(b"retained").retain is False


def test_MQTT5_3_3_1_13_retain_as_published_1_keeps_retain(client, topic):
    """MQTT 5 MQTT-3.3.1-13: "If the value of Retain As Published subscription option is set to 1,
    the Server MUST set the RETAIN flag equal to the RETAIN flag in the received PUBLISH packet"."""
    sub = client(V5)
    sub.subscribe(f"{topic}/x", options=sub_options(1, retain_as_published=True))
    pub = client(V5)
    pub.publish(f"{topic}/x", b"retained", qos=1, retain=True)
    pub.publish(f"{topic}/x", b"plain", qos=1, retain=False)
    assert sub.messages.wait_payload(b"retained").retain is True
    assert sub.messages.wait_payload(b"plain").retain is False


def retained_setup(client, topic):
    pub = client(V5)
    pub.publish(f"{topic}/r", b"retained", qos=1, retain=True)
    return pub


def test_MQTT5_3_3_1_9_retain_handling_0_sends_retained_at_every_subscribe(client, topic):
    """MQTT 5 MQTT-3.3.1-9: "If Retain Handling is set to 0 the Server MUST send the retained
    messages matching the Topic Filter of the subscription to the Client"."""
    retained_setup(client, topic)
    sub = client(V5)
    sub.subscribe(f"{topic}/r", options=sub_options(1, retain_handling=0))
    sub.messages.wait_payload(b"retained")
    sub.subscribe(f"{topic}/r", options=sub_options(1, retain_handling=0))
    got = sub.messages.wait(lambda m: m.payload == b"retained", count=2)
    assert all(m.retain for m in got)


def test_MQTT5_3_3_1_10_retain_handling_1_sends_retained_only_for_new_subscription(client, topic):
    """MQTT 5 MQTT-3.3.1-10: "If Retain Handling is set to 1 then if the subscription did not already
    exist, the Server MUST send all retained message matching the Topic Filter of the subscription
    to the Client, and if the subscription did exist the Server MUST NOT send the retained
    messages"."""
    pub = retained_setup(client, topic)
    sub = client(V5)
    sub.subscribe(f"{topic}/r", options=sub_options(1, retain_handling=1))
    sub.messages.wait_payload(b"retained")
    sub.subscribe(f"{topic}/r", options=sub_options(1, retain_handling=1))
    barrier(pub, sub, f"{topic}/r")
    copies = sub.messages.matching(lambda m: m.payload == b"retained")
    assert len(copies) == 1, f"retained message sent {len(copies)} times with Retain Handling 1"


def test_MQTT5_3_3_1_11_retain_handling_2_sends_no_retained(client, topic):
    """MQTT 5 MQTT-3.3.1-11: "If Retain Handling is set to 2, the Server MUST NOT send the retained
    messages"."""
    pub = retained_setup(client, topic)
    sub = client(V5)
    sub.subscribe(f"{topic}/r", options=sub_options(1, retain_handling=2))
    barrier(pub, sub, f"{topic}/r")
    assert not sub.messages.matching(lambda m: m.payload == b"retained"), \
        "a retained message was sent with Retain Handling 2"


def test_MQTT5_4_8_2_1_shared_subscription_splits_messages(client, topic):
    """MQTT 5 MQTT-4.8.2-1, 4.8.2: "A Shared Subscription's Topic Filter MUST start with $share/ and
    MUST contain a ShareName that is at least one character long"; each message matching it goes
    to one session of the group (none lost, none doubled) while ordinary subscriptions get every
    message."""
    group = new_id("g")
    members = [client(V5), client(V5)]
    for m in members:
        assert m.connack[2].get("SharedSubscriptionAvailable", 1) == 1, "shared subscriptions unavailable"
        codes = m.subscribe(f"$share/{group}/{topic}/#", 1)
        assert codes == [1], f"SUBACK {codes} for a shared subscription"
    plain = client(V5)
    plain.subscribe(f"{topic}/#", 1)
    pub = client(V5)
    n = 40
    for i in range(n):
        pub.publish(f"{topic}/m/{i % 4}", f"{i}".encode(), qos=1, wait=(i == n - 1))
    plain.messages.wait(count=n)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum(len(m.messages.snapshot()) for m in members) < n:
        time.sleep(0.05)
    time.sleep(0.3)
    got = [sorted(int(x.payload) for x in m.messages.snapshot()) for m in members]
    both = sorted(got[0] + got[1])
    assert both == list(range(n)), f"members got {got[0]} and {got[1]}: lost or doubled"
    assert got[0] and got[1], f"one member got every message: {len(got[0])} / {len(got[1])}"


def test_MQTT5_3_2_2_16_assigned_client_identifier(raw):
    """MQTT 5 MQTT-3.2.2-16: "If the Client connects using a zero length Client Identifier, the Server
    MUST respond with a CONNACK containing an Assigned Client Identifier. The Assigned Client
    Identifier MUST be a new Client Identifier not used by any other Session currently in the
    Server"."""
    r = raw(V5)
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 0
    present, code, props = r.connect("", clean=True, properties=p)
    assert code == 0 and present is False
    assigned = props.get("AssignedClientIdentifier")
    assert assigned, f"no Assigned Client Identifier in {props}"
