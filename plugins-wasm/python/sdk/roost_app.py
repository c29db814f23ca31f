"""The component's entry point: adapts the `processor` world to a plain `process(message)`
function in the user's module (copied in as `user_processor` by build.sh). Not for editing."""

import sys

from componentize_py_types import Err
from wit_world.imports import types

import roost


class _LogStream:
    """print() and tracebacks go to Roost's log a line at a time (the component has no stdout)."""

    def __init__(self, log):
        self._log = log
        self._line = ""

    def write(self, text):
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            if line.strip():
                self._log(line)
        return len(text)

    def flush(self):
        pass


sys.stdout = _LogStream(roost.info)
sys.stderr = _LogStream(roost.warn)

import user_processor  # noqa: E402  (after the streams, so its import-time prints are logged)


def _field(name, value):
    # bool first: in Python, True is an int
    if isinstance(value, bool):
        return (name, types.FieldValue_Boolean(value))
    if isinstance(value, int):
        return (name, types.FieldValue_Int(value))
    if isinstance(value, float):
        return (name, types.FieldValue_Float(value))
    if isinstance(value, str):
        return (name, types.FieldValue_Str(value))
    raise TypeError(f"field {name!r}: {type(value).__name__} is not int, float, bool or str")


def _record(message, record):
    if not isinstance(record, dict):
        raise TypeError(f"a record is a dict, not {type(record).__name__}")
    time = record.get("time")
    return types.Record(
        measurement=str(record.get("measurement") or message.measurement()),
        time=int(message.received_at if time is None else time),
        device=str(record.get("device") or message.device),
        tags=[(str(k), str(v)) for k, v in (record.get("tags") or {}).items()],
        fields=[_field(str(k), v) for k, v in (record.get("fields") or {}).items() if v is not None],
    )


class WitWorld:
    def init(self, config):
        init = getattr(user_processor, "init", None)
        if init is None:
            return
        try:
            init(config)
        except Exception as e:
            raise Err(f"{type(e).__name__}: {e}")

    def process(self, msg):
        message = roost.Message(msg)
        try:
            out = user_processor.process(message)
            if out is None:
                return []
            if isinstance(out, dict):
                out = [out]
            return [_record(message, r) for r in out]
        except Exception as e:
            raise Err(types.ProcessingError(message=f"{type(e).__name__}: {e}"))
