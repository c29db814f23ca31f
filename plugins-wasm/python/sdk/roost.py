"""Write Roost processors in Python.

A processor is a module with a plain function::

    def process(message):
        data = message.json()
        return {"fields": {"t_f": data["t"] * 9 / 5 + 32}}

and, optionally, ``def init(config)`` (called once per instance with the pipeline's config string).

``process`` returns ``None`` or ``[]`` (the message is dropped), one record or a list of records.
A record is a dict (or a :class:`Record`) with ``fields`` (name -> int, float, bool or str) and,
optionally, ``measurement`` (default: from the topic), ``device`` (default: the message's),
``time`` (nanoseconds since the epoch; default: when the message was received) and ``tags``
(name -> str). An exception sends the message to Roost's dead-letter store with its text.

Build with ``plugins-wasm/python/build.sh your_module.py out.wasm``.
"""

import json as _json

from wit_world.imports import log as _log


class Message:
    """One MQTT message, as the broker received it."""

    __slots__ = ("topic", "client_id", "device", "payload", "received_at", "qos", "retain",
                 "user_properties")

    def __init__(self, msg):
        self.topic = msg.topic
        self.client_id = msg.client_id
        self.device = msg.device
        self.payload = msg.payload
        self.received_at = msg.received_at
        self.qos = msg.qos
        self.retain = msg.retain
        self.user_properties = msg.user_properties

    def json(self):
        """The payload parsed as JSON."""
        return _json.loads(self.payload)

    def measurement(self):
        """`env` for the topic `devices/d1/env`, else the topic's last level."""
        levels = self.topic.split("/")
        if len(levels) >= 3 and levels[0] == "devices":
            return levels[2]
        return levels[-1]


class Record(dict):
    """A record: a dict with the keys measurement, device, time, tags and fields."""

    def __init__(self, measurement=None, fields=None, tags=None, device=None, time=None):
        super().__init__(measurement=measurement, fields=fields or {}, tags=tags or {},
                         device=device, time=time)


def debug(text):
    _log.log(_log.Level.DEBUG, str(text))


def info(text):
    _log.log(_log.Level.INFO, str(text))


def warn(text):
    _log.log(_log.Level.WARN, str(text))


def error(text):
    _log.log(_log.Level.ERROR, str(text))
