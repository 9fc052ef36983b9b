"""
What an open page connection keeps (see C{chatthing.live._footprint}): its
attributes in slots, not in a dict; not twisted.web's request and channel,
not the handshake's bytes and headers, not a copy of every Autobahn option;
and the options it reads from its factory still work.
"""

import gc

import pytest_twisted
from conftest import eventually
from twisted.web.http import HTTPChannel, Request

from chatthing.live._footprint import FactoryOption


def _liveRequests() -> list:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Request) and b"live" in (o.uri or b"")]


@pytest_twisted.ensureDeferred
async def test_webRequestLetGoOnceTheWebSocketOpens(chatServer):
    """The HTTP channel and request of the upgrade are not kept alive by the open WebSocket."""
    alice = await chatServer.login("alice")
    connection = chatServer.serverSide(alice)
    assert connection.transport.producer is None
    assert _liveRequests() == []
    assert not [c for c in gc.get_objects() if isinstance(c, HTTPChannel) and c.transport is None]
    # The page still works both ways.
    await alice.call("say", "still here")
    await alice.waitFor(lambda: ["alice", "still here"] in alice.calls("displayUserMessage"))


@pytest_twisted.ensureDeferred
async def test_handshakeForgottenOptionsFromFactory(chatServer):
    """An open connection holds no handshake bytes and no copies of the factory's options, yet follows them."""
    alice = await chatServer.login("alice")
    connection = chatServer.serverSide(alice)
    factory = chatServer.site.liveFactory
    assert connection.http_request_data == b"" and connection.http_response_data == b""
    assert dict(connection.http_headers) == {}
    assert len(connection.send_queue) == 0 and not hasattr(connection.send_queue, "append")
    assert isinstance(type(connection).__dict__["autoPingInterval"], FactoryOption)
    # Everything it holds is in a slot (CONNECTION_ATTRIBUTES): nothing in an
    # instance dict, and no copy of an option.
    assert vars(connection) == {}, sorted(vars(connection))
    assert connection._ownOptions is None
    assert connection.closeHandshakeTimeout == factory.closeHandshakeTimeout
    factory.setProtocolOptions(closeHandshakeTimeout=7)
    assert connection.closeHandshakeTimeout == 7
    connection.closeHandshakeTimeout = 3  # set on one connection: its own
    assert connection.closeHandshakeTimeout == 3 and factory.closeHandshakeTimeout == 7
    assert connection._ownOptions == {"closeHandshakeTimeout": 3}
    # The page can still leave cleanly (the close handshake uses the options).
    alice.close()
    assert await alice.closed() == 1000
    await eventually(lambda: not chatServer.connections, "the connection to go")


@pytest_twisted.ensureDeferred
async def test_tricklingGetsItsOwnSendQueue(chatServer):
    """A write trickled out over several turns (Autobahn's sendFrame with a chopsize) gets a real queue and arrives whole."""
    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    connection = chatServer.serverSide(alice)
    payload = b'{"type":"emit","stream":"x","method":"m","args":["' + b"y" * 100 + b'"]}'
    connection.sendFrame(opcode=1, payload=payload, chopsize=16)
    assert hasattr(connection.send_queue, "append")
    assert hasattr(chatServer.serverSide(bob).send_queue, "append") is False
    await alice.waitFor(lambda: [["y" * 100]] == [f["args"] for f in alice.frames if f.get("stream") == "x"],
                        "the trickled frame")


@pytest_twisted.ensureDeferred
async def test_optionsNotFormattedForEachConnection(chatServer, monkeypatch):
    """Autobahn's pprint of its options, for a debug line nobody reads, is skipped for each new connection."""
    import autobahn.websocket.protocol as autobahnProtocol

    formatted = []

    def counting(value):
        formatted.append(repr(value))
        return "counted"

    monkeypatch.setattr(autobahnProtocol, "pformat", counting)
    alice = await chatServer.login("alice")  # a client in this process: its options are formatted
    await alice.call("say", "hello")
    assert any("WebSocketClientFactory" in text for text in formatted)
    assert not [text for text in formatted if "LiveServer" in text]
    assert autobahnProtocol.pformat is counting  # put back afterwards
