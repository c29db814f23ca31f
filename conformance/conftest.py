"""Fixtures of the conformance suite: the broker (from the variables run.py sets), the protocol
version a test runs under, and factories for clients that are closed after each test."""

from __future__ import annotations

import uuid

import pytest

from mqtt_helpers import V311, V5, Broker, Client, RawClient


@pytest.fixture(scope="session")
def broker() -> Broker:
    return Broker.from_env()


@pytest.fixture(params=[V311, V5], ids=["v311", "v5"])
def version(request) -> int:
    """Runs the test once with MQTT 3.1.1 and once with MQTT 5."""
    return request.param


@pytest.fixture
def topic() -> str:
    """A topic prefix no other test uses: `conf/<random>`."""
    return f"conf/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(broker):
    """`client(version, **kwargs)`: a connected paho client (`connect=False` to connect later)."""
    made: list[Client] = []

    def make(version: int, connect: bool = True, **kwargs) -> Client:
        c = Client(broker, version, **kwargs)
        made.append(c)
        if connect:
            c.connect()
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def raw(broker):
    """`raw(version)`: a raw MQTT connection (not yet sent CONNECT)."""
    made: list[RawClient] = []

    def make(version: int = V311) -> RawClient:
        r = RawClient(broker, version)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def device(broker):
    """The restricted user's credentials: (username, password, client id)."""
    if not broker.user:
        pytest.skip("no restricted user given (MQTT_USER)")
    # Roost requires a registered device's client id to be its name; Mosquitto does not care.
    return broker.user, broker.password, broker.user

