"""
What an open page connection keeps (see C{chatthing.live._footprint}): its
attributes in slots, not in a dict; not twisted.web's request and channel,
not the handshake's bytes and headers, not a copy of every Autobahn option;
and the options it reads from its factory still work.
"""

import gc

import pytest_twisted
from conftest import eventually
from twisted.internet.defer import Deferred
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
    assert connection._options is factory
    assert connection.closeHandshakeTimeout == factory.closeHandshakeTimeout
    factory.setProtocolOptions(closeHandshakeTimeout=7)
    assert connection.closeHandshakeTimeout == 7
    connection.closeHandshakeTimeout = 3  # set on one connection: its own
    assert connection.closeHandshakeTimeout == 3 and factory.closeHandshakeTimeout == 7
    assert connection._options.closeHandshakeTimeout == 3 and connection.autoPingInterval == factory.autoPingInterval
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


@pytest_twisted.ensureDeferred
async def test_idleConnectionKeepsNoObjectsOfItsOwnForLater(chatServer):
    """Between messages a connection holds no unmasker, validator, traffic counters, event table, opening Deferred or reactor timer of its own."""
    from chatthing.live._timerwheel import WheelTimer

    alice = await chatServer.login("alice")
    bob = await chatServer.login("bob")
    await alice.call("say", "hello")
    one, other = chatServer.serverSide(alice), chatServer.serverSide(bob)
    assert one.current_frame_masker is None and one.utf8validator is None
    assert one.trafficStats is other.trafficStats is chatServer.site.liveFactory.trafficStats
    assert one.trafficStats.incomingWebSocketMessages >= 4  # two hellos, two logins, one say
    assert one._valid_events is other._valid_events and one._results is None
    assert one._transport_details is None and one._wskey is None
    assert one._helloTimeout is None
    assert type(one.autoPingPendingCall) is WheelTimer and one.autoPingPendingCall.active()
    assert "_isOpen" in type(one).__slots__ and not isinstance(one._isOpen, Deferred)
    # Whoever asks still gets Autobahn's Deferreds: opened, and closed when it closes.
    opened, closed = [], []
    one.is_open.addCallback(opened.append)
    one.is_closed.addCallback(closed.append)
    assert opened == [None] and closed == []
    alice.close()
    await eventually(lambda: closed == [one], "is_closed to fire")


@pytest_twisted.ensureDeferred
async def test_textMessagesStillValidated(chatServer):
    """With validators lent per message, a text message of invalid UTF-8 still closes the connection with 1007."""
    alice = await chatServer.login("alice")
    alice.protocol.sendMessage(b'{"type":"ack","seq":0,"x":"\xff\xfe"}', isBinary=False)
    assert await alice.closed() == 1007


def test_timerWheelFiresInTheTickOfItsDeadline():
    """A wheel timer fires never before its deadline, at most a tick after, on one reactor call a tick for all timers in it."""
    from twisted.internet.task import Clock

    from chatthing.live._timerwheel import TimerWheel

    clock, fired = Clock(), []
    wheel = TimerWheel(clock, tick=0.05)
    clock.advance(0.01)
    for name in ("a", "b", "c"):
        wheel.call_later(15, fired.append, name)
    wheel.call_later(15.04, fired.append, "d")  # same tick (ends at 15.05)
    wheel.call_later(0.3, fired.append, "soon")
    assert len(clock.getDelayedCalls()) == 2 and len(wheel) == 5
    clock.advance(0.3)  # its deadline, 0.31, is in the tick that ends at 0.35
    assert fired == []
    clock.advance(0.04)
    assert fired == ["soon"]
    clock.advance(14.65)  # 15.0: the deadlines, 15.01 and 15.05, not yet
    assert fired == ["soon"]
    clock.advance(0.05)  # 15.05
    assert fired == ["soon", "a", "b", "c", "d"]
    assert clock.getDelayedCalls() == [] and len(wheel) == 0


def test_timerWheelCancelAndFailure():
    """A cancelled wheel timer never fires and lets go of its call; one that raises is logged and the others in its tick still fire."""
    from twisted.internet.task import Clock
    from twisted.logger import globalLogPublisher

    from chatthing.live._timerwheel import TimerWheel

    clock, fired, events = Clock(), [], []
    wheel = TimerWheel(clock)
    cancelled = wheel.call_later(1, fired.append, "cancelled")
    wheel.call_later(1, lambda: 1 / 0)
    kept = wheel.call_later(1, fired.append, "kept")
    cancelled.cancel()
    cancelled.cancel()  # again: nothing
    assert not cancelled.active() and cancelled.args == () and kept.active()
    globalLogPublisher.addObserver(events.append)
    try:
        clock.advance(1)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert fired == ["kept"] and not kept.active()
    assert any("raised" in event.get("log_format", "") for event in events)
    # A tick whose timers are all cancelled goes at once, with its reactor call.
    waits = [wheel.call_later(10, fired.append, "hello?") for _ in range(3)]
    assert wheel.calls() == 1 and len(clock.getDelayedCalls()) == 1
    for wait in waits:
        wait.cancel()
    assert wheel.calls() == 0 and clock.getDelayedCalls() == [] and len(wheel) == 0
    # Exactly on whole seconds too, whatever the floating point sum of ticks.
    wheel.call_later(15, fired.append, "on time")
    clock.advance(15)
    assert fired == ["kept", "on time"]


@pytest_twisted.ensureDeferred
async def test_debugLinesNotFormattedForEachFrame(chatServer, monkeypatch):
    """Autobahn's debug formatters (hltype, a few µs each) are not run for the server's reads and writes; they are put back afterwards."""
    import autobahn.twisted.websocket as autobahnTwisted
    import autobahn.websocket.protocol as autobahnProtocol

    from chatthing.live._protocol import LiveServerProtocol

    named = []

    def counting(value, *args, **kwargs):
        named.append(type(getattr(value, "__self__", value)))
        return "counted"

    for module in (autobahnTwisted, autobahnProtocol):
        monkeypatch.setattr(module, "hltype", counting)
    alice = await chatServer.login("alice")
    await alice.call("say", "hello")
    alice.close()
    await eventually(lambda: not chatServer.connections, "the connection to go")
    assert named, "the client in this process formats its own"
    assert LiveServerProtocol not in named
    assert autobahnTwisted.hltype is counting and autobahnProtocol.hltype is counting


class _Page:
    """A connection as the coalescer sees it: what it gathers, what it writes."""

    def __init__(self, writes: list) -> None:
        self.gathered = None
        self.writes = writes

    def writeCoalesced(self, data: bytes) -> None:
        self.writes.append(data)


def test_fanOutAllocatesNothingPerPage():
    """Gathering one frame for each of 2,000 pages allocates no object a page (a list a page before); a second frame still goes out after the first."""
    import sys

    from twisted.internet.task import Clock

    from chatthing.live._sending import WriteCoalescer

    clock, writes = Clock(), []
    coalescer = WriteCoalescer(clock)
    pages = [_Page(writes) for _ in range(2000)]
    coalescer.add(pages[0], b"warm")  # the reactor call and the list of waiting pages
    clock.advance(0)
    writes.clear()
    frame = b"frame"
    gc.disable()
    try:
        before = sys.getallocatedblocks()
        for page in pages:
            coalescer.add(page, frame)
        allocated = sys.getallocatedblocks() - before
    finally:
        gc.enable()
    assert allocated < 100, f"{allocated} blocks for {len(pages)} pages"
    coalescer.add(pages[1], b"second")
    clock.advance(0)
    assert writes[0] == b"frame" and writes[1] == b"framesecond" and len(writes) == len(pages)
    assert all(page.gathered is None for page in pages)
