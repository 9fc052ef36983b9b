"""
Unit tests of the live runtime with no sockets: an element, its session, a
fake connection that collects the frames sent to the page, and a fake clock.
"""

import json

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatthing.live import (
    BadArguments,
    CallRefused,
    ElementDetached,
    LiveElement,
    NoSuchMethod,
    ProtocolError,
    RemoteError,
    Stream,
    TooManyPendingCalls,
    _wire,
    expose,
)
from chatthing.live._replay import ACK_DELAY, ACK_EVERY
from chatthing.live._session import LiveSession
from chatthing.live._settings import LiveSettings


class Sorry(CallRefused):
    """An application's own refusal."""


class Calculator(LiveElement):
    """An element with one exposed method of each kind."""

    def __init__(self):
        self.waiting = Deferred()
        self.pending = []
        self.hooks = []

    @expose
    def add(self, a: int, b: int = 1) -> int:
        return a + b

    @expose
    def shout(self, text: str) -> str:
        return text.upper()

    @expose
    def ratio(self, x: float) -> float:
        return x / 2

    @expose
    def later(self):
        return self.waiting

    @expose
    def wait(self):
        d = Deferred()
        self.pending.append(d)
        return d

    @expose
    async def asynchronously(self, text: str) -> str:
        return await succeed(text * 2)

    @expose
    def refuse(self):
        raise Sorry("not today")

    @expose
    def crash(self):
        return 1 / 0

    def hidden(self):
        return "secret"

    def connected(self):
        self.hooks.append("connected")

    def disconnected(self, reason):
        self.hooks.append(("disconnected", reason.type))


def preparedPayload(message) -> bytes:
    """
    The payload of a L{PreparedMessage}: its unmasked WebSocket frame without
    the header.
    """
    data = message.payloadHybi
    length = data[1] & 0x7F
    start = {126: 4, 127: 10}.get(length, 2)
    return data[start:]


class FakeConnection:
    """
    What a session needs of a page's connection (a L{PageConnection}): it
    decodes and collects every frame sent to the page.

    @ivar frames: the frames sent, decoded, in order.
    @ivar prepared: the L{PreparedMessage}s sent, as they were.
    @ivar closed: why the session closed this connection, if it did.
    """

    def __init__(self):
        self.frames = []
        self.prepared = []
        self.closed = None

    def sendPayload(self, payload):
        self.frames.append(json.loads(payload))

    def sendPrepared(self, message):
        self.prepared.append(message)
        self.frames.append(json.loads(preparedPayload(message)))

    def sendLiveFrame(self, frame):
        self.frames.append(json.loads(_wire.encode(frame)))

    def replaced(self):
        self.closed = "replaced"

    def expel(self, reason):
        self.closed = ("expelled", reason)


def newSession(element, settings=LiveSettings(), ident="s1"):
    """
    A session for C{element}, attached to a L{FakeConnection}, on a L{Clock}.

    @return: the session, its connection, its clock and the list of sessions
        ended.
    """
    clock, ended = Clock(), []
    session = LiveSession(ident, element, settings, clock, ended.append)
    connection = FakeConnection()
    session.attach(connection)
    element._liveAttach(session)
    return session, connection, clock, ended


def logTo(session):
    """
    Collect what C{session} logs; the list of events.
    """
    events = []
    session.log = Logger(namespace="test", observer=events.append)
    return events


def attach(element):
    session, connection, clock, ended = newSession(element)
    return session, connection.frames, logTo(session)


def call(session, method, *args, ident=7, seq=None):
    frame = {"type": "call", "id": ident, "method": method, "args": list(args)}
    if seq is not None:
        frame["seq"] = seq
    session.receive(frame)


class ExposedCallTests(SynchronousTestCase):
    def setUp(self):
        self.element = Calculator()
        self.session, self.frames, self.logged = attach(self.element)

    def test_connectedHook(self):
        """Attaching an element runs its connected() hook."""
        self.assertEqual(self.element.hooks, ["connected"])

    def test_result(self):
        """An exposed method's return value goes back as the call's result."""
        call(self.session, "add", 2, 3)
        self.assertEqual(self.frames, [{"type": "result", "id": 7, "value": 5, "seq": 1}])

    def test_defaultArgument(self):
        """Optional parameters may be left out."""
        call(self.session, "add", 2)
        self.assertEqual(self.frames[-1]["value"], 3)

    def test_deferredResult(self):
        """A Deferred result is answered when it fires, not before."""
        call(self.session, "later")
        self.assertEqual(self.frames, [])
        self.element.waiting.callback("done")
        self.assertEqual(self.frames, [{"type": "result", "id": 7, "value": "done", "seq": 1}])

    def test_coroutineResult(self):
        """A coroutine method is awaited."""
        call(self.session, "asynchronously", "ab")
        self.assertEqual(self.frames[-1], {"type": "result", "id": 7, "value": "abab", "seq": 1})

    def test_floatAcceptsInt(self):
        """A float parameter takes JSON integers too."""
        call(self.session, "ratio", 3)
        self.assertEqual(self.frames[-1]["value"], 1.5)

    def test_unexposedIsNoSuchMethod(self):
        """Methods not marked with expose, private names and hooks are refused."""
        for name in ["hidden", "callRemote", "connected", "_liveAttach", "__init__", "nothing"]:
            with self.assertRaises(NoSuchMethod):
                call(self.session, name)

    def test_wrongCount(self):
        """Too many or too few arguments are BadArguments, naming the method."""
        with self.assertRaises(BadArguments) as e:
            call(self.session, "add")
        self.assertIn("add()", str(e.exception))
        with self.assertRaises(BadArguments):
            call(self.session, "add", 1, 2, 3)

    def test_wrongTypes(self):
        """Annotated str/int parameters reject other JSON types, booleans included."""
        for method, args in [("shout", [5]), ("shout", [None]), ("add", ["1"]), ("add", [True]),
                             ("ratio", ["x"]), ("shout", [["a"]])]:
            with self.assertRaises(BadArguments):
                call(self.session, method, *args)

    def test_refusal(self):
        """An application's CallRefused goes to the page by class name and message, logged in one line with no traceback."""
        call(self.session, "refuse")
        self.assertEqual(
            self.frames,
            [{"type": "error", "id": 7, "error": {"name": "Sorry", "message": "not today"}, "seq": 1}],
        )
        [logged] = self.logged
        self.assertEqual(logged["kind"], "Sorry")
        self.assertEqual(logged["error"], "'not today'")  # cut and escaped: logsafe.cut()
        self.assertNotIn("log_failure", logged)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_unexpectedError(self):
        """A bug's exception is logged with its traceback and reported by name, no traceback sent."""
        call(self.session, "crash")
        self.assertEqual(
            self.frames,
            [{"type": "error", "id": 7,
              "error": {"name": "ZeroDivisionError", "message": "division by zero"}, "seq": 1}],
        )
        [logged] = self.logged
        self.assertIsInstance(logged["log_failure"].value, ZeroDivisionError)

    def test_unknownFrameType(self):
        """An unknown frame type is a ProtocolError."""
        with self.assertRaises(ProtocolError):
            self.session.receive({"type": "dance"})

    def test_answerAfterDetachIsDropped(self):
        """A result ready after the page left is not sent."""
        call(self.session, "later")
        self.session.end(Failure(ConnectionDone()))
        self.element.waiting.callback("late")
        self.assertEqual(self.frames, [])


class CallRemoteTests(SynchronousTestCase):
    def setUp(self):
        self.element = Calculator()
        self.session, self.frames, self.logged = attach(self.element)

    def test_callFrame(self):
        """callRemote sends a numbered call frame."""
        self.element.callRemote("show", "a", 1)
        self.element.callRemote("show")
        self.assertEqual(self.frames, [
            {"type": "call", "id": 0, "method": "show", "args": ["a", 1], "seq": 1},
            {"type": "call", "id": 1, "method": "show", "args": [], "seq": 2},
        ])

    def test_result(self):
        """The page's result fires the call's Deferred."""
        d = self.element.callRemote("show")
        self.session.receive({"type": "result", "id": 0, "value": [1, 2]})
        self.assertEqual(self.successResultOf(d), [1, 2])

    def test_remoteError(self):
        """The page's error fails the Deferred with RemoteError(name, message)."""
        d = self.element.callRemote("show")
        self.session.receive({"type": "error", "id": 0,
                              "error": {"name": "TypeError", "message": "bad"}})
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual((error.name, error.message), ("TypeError", "bad"))

    def test_answerForUnknownCall(self):
        """An answer to no waiting call is a ProtocolError."""
        with self.assertRaises(ProtocolError):
            self.session.receive({"type": "result", "id": 99, "value": None})

    def test_detachFailsWaitingCalls(self):
        """Calls still waiting when the page goes fail with ElementDetached."""
        d = self.element.callRemote("show")
        self.session.end(Failure(ConnectionDone()))
        self.failureResultOf(d, ElementDetached)

    def test_callAfterDetachFailsFast(self):
        """After the page has gone, callRemote fails at once and sends nothing."""
        self.session.end(Failure(ConnectionDone()))
        self.failureResultOf(self.element.callRemote("show"), ElementDetached)
        self.assertEqual(self.frames, [])

    def test_callBeforeAttachFailsFast(self):
        """An element that has no page yet cannot call it."""
        self.failureResultOf(Calculator().callRemote("show"), ElementDetached)

    def test_disconnectHooks(self):
        """Detaching runs disconnected() once and fires every notifyOnDisconnect()."""
        before = self.element.notifyOnDisconnect()
        self.session.end(Failure(ConnectionDone()))
        self.session.end(Failure(ConnectionDone()))
        after = self.element.notifyOnDisconnect()
        self.assertEqual(self.element.hooks, ["connected", ("disconnected", ConnectionDone)])
        self.assertIsInstance(self.successResultOf(before), ConnectionDone)
        self.assertIsInstance(self.successResultOf(after), ConnectionDone)


class ReceivingTests(SynchronousTestCase):
    """
    The page's numbered frames: each run once, acknowledged in batches.
    """

    def setUp(self):
        self.element = Calculator()
        self.session, self.connection, self.clock, self.ended = newSession(self.element)
        self.logged = logTo(self.session)

    def results(self):
        return [f for f in self.connection.frames if f["type"] in ("result", "error")]

    def acks(self):
        return [f for f in self.connection.frames if f["type"] == "ack"]

    def test_numberedFramesRunOnce(self):
        """A frame whose seq was already received (re-sent after a resume) is not run again."""
        call(self.session, "shout", "a", ident=1, seq=1)
        call(self.session, "shout", "b", ident=2, seq=2)
        call(self.session, "shout", "a", ident=1, seq=1)
        call(self.session, "shout", "b", ident=2, seq=2)
        call(self.session, "shout", "c", ident=3, seq=3)
        self.assertEqual([(f["id"], f["value"], f["seq"]) for f in self.results()],
                         [(1, "A", 1), (2, "B", 2), (3, "C", 3)])

    def test_unnumberedFramesAlwaysRun(self):
        """Frames without a seq are run as they come, each time."""
        call(self.session, "shout", "a", ident=1, seq=1)
        call(self.session, "shout", "x", ident=2)
        call(self.session, "shout", "x", ident=3)
        self.assertEqual([f["value"] for f in self.results()], ["A", "X", "X"])

    def test_acknowledgedAfterDelay(self):
        """Numbered frames are acknowledged, up to the latest, ACK_DELAY seconds after the first."""
        call(self.session, "shout", "a", ident=1, seq=1)
        call(self.session, "shout", "b", ident=2, seq=2)
        self.assertEqual(self.acks(), [])
        self.clock.advance(ACK_DELAY - 0.01)
        self.assertEqual(self.acks(), [])
        self.clock.advance(0.01)
        self.assertEqual(self.acks(), [{"type": "ack", "seq": 2}])
        self.clock.advance(10)
        self.assertEqual(len(self.acks()), 1)

    def test_acknowledgedAfterManyFrames(self):
        """ACK_EVERY numbered frames are acknowledged at once, with no wait."""
        for i in range(1, ACK_EVERY + 1):
            call(self.session, "shout", "a", ident=i, seq=i)
        self.assertEqual(self.acks(), [{"type": "ack", "seq": ACK_EVERY}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unnumberedFramesNotAcknowledged(self):
        call(self.session, "shout", "x", ident=1)
        self.clock.advance(10)
        self.assertEqual(self.acks(), [])

    def test_ackFrames(self):
        """The page's ack must carry a seq; an ack is never answered."""
        self.element.callRemote("show")
        self.session.receive({"type": "ack", "seq": 1})
        for bad in [{"type": "ack"}, {"type": "ack", "seq": "1"}, {"type": "ack", "seq": -1},
                    {"type": "ack", "seq": True}]:
            with self.assertRaises(ProtocolError):
                self.session.receive(bad)
        self.assertEqual([f["type"] for f in self.connection.frames], ["call"])

    def test_badSeqIsProtocolError(self):
        """A seq that is not an integer >= 0 is refused, and the call not run."""
        for seq in ["1", -1, 1.5, True, [1]]:
            with self.assertRaises(ProtocolError):
                self.session.receive({"type": "call", "id": 1, "method": "shout", "args": ["a"],
                                      "seq": seq})
        self.assertEqual(self.results(), [])

    def test_secondHello(self):
        with self.assertRaises(ProtocolError) as e:
            self.session.receive({"type": "hello", "version": 1})
        self.assertIn("already received", str(e.exception))

    def test_leaveFrameIsQuiet(self):
        """A leave frame is not answered; the connection ends the session when it closes."""
        self.session.receive({"type": "leave"})
        self.assertEqual(self.connection.frames, [])
        self.assertFalse(self.session.ended)

    def test_tooManyPendingCalls(self):
        """Past maxPendingCalls calls running at once, calls are refused until one finishes."""
        self.session, self.connection, _, _ = newSession(
            self.element, LiveSettings(maxPendingCalls=3))
        for i in range(3):
            call(self.session, "wait", ident=i)
        with self.assertRaises(TooManyPendingCalls):
            call(self.session, "wait", ident=3)
        self.assertEqual(len(self.element.pending), 3)
        self.element.pending[1].callback("done")
        self.assertEqual(self.results(), [{"type": "result", "id": 1, "value": "done", "seq": 1}])
        call(self.session, "wait", ident=4)  # takes the place freed
        with self.assertRaises(TooManyPendingCalls):
            call(self.session, "add", 1, ident=5)
        for d in self.element.pending[::-1]:
            if not d.called:
                d.callback(None)
        call(self.session, "add", 2, ident=6)
        self.assertEqual([f["id"] for f in self.results()], [1, 4, 2, 0, 6])
        self.assertEqual(self.results()[-1], {"type": "result", "id": 6, "value": 3, "seq": 5})

    def test_failedCallsFreeTheirPlace(self):
        """Calls that fail or are refused do not count as still running."""
        self.session, self.connection, _, _ = newSession(
            self.element, LiveSettings(maxPendingCalls=1))
        self.session.log = Logger(namespace="test", observer=lambda event: None)
        for i in range(3):
            call(self.session, "refuse", ident=i)
            call(self.session, "crash", ident=10 + i)
        call(self.session, "add", 1, ident=20)
        self.assertEqual([f["error"]["name"] for f in self.results() if f["type"] == "error"],
                         ["Sorry", "ZeroDivisionError"] * 3)
        self.assertEqual(self.results()[-1]["value"], 2)

    def test_unencodableResult(self):
        """A result that cannot be JSON is sent as a ServerError in its place, numbered, and logged."""
        self.element.waiting = Deferred()
        call(self.session, "later", ident=4)
        self.element.waiting.callback(object())
        [answer] = self.results()
        self.assertEqual((answer["type"], answer["id"], answer["seq"], answer["error"]["name"]),
                         ("error", 4, 1, "ServerError"))
        self.assertEqual(len(self.logged), 1)
        self.assertIn("log_failure", self.logged[0])


class EndTests(SynchronousTestCase):
    def setUp(self):
        self.element = Calculator()
        self.session, self.connection, self.clock, self.ended = newSession(self.element)

    def test_endOnce(self):
        """end() detaches the element and tells the factory once, and cancels the ack timer."""
        call(self.session, "add", 1, seq=1)
        self.assertTrue(self.clock.getDelayedCalls())
        self.session.end(Failure(ConnectionDone()))
        self.session.end(Failure(ConnectionLost()))
        self.assertEqual(self.ended, [self.session])
        self.assertEqual(self.element.hooks, ["connected", ("disconnected", ConnectionDone)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_endLeavesStreams(self):
        """An ended session is no longer a subscriber of its streams."""
        stream = Stream("room")
        self.element.subscribe(stream)
        self.assertEqual(stream.subscribers(), [self.session])
        self.session.end(Failure(ConnectionDone()))
        self.assertEqual(stream.subscribers(), [])
        stream.emit("show", 1)
        self.assertEqual(self.connection.frames, [])

    def test_nothingSentAfterEnd(self):
        self.session.end(Failure(ConnectionDone()))
        self.session.send(_wire.resultFrame(1, None))
        self.assertEqual(self.connection.frames, [])

    def test_subscribeNeedsAPage(self):
        """An element with no page cannot subscribe to a stream."""
        with self.assertRaises(ElementDetached):
            Calculator().subscribe(Stream("room"))


@pytest.mark.parametrize("payload, isBinary, message", [
    (b"not json", False, "not valid JSON"),
    (b"[1, 2]", False, "JSON object"),
    (b"42", False, "JSON object"),
    (b'{"id": 1}', False, '"type"'),
    (b'{"type": 5}', False, '"type"'),
    (b"{}", True, "binary"),
    (b'"' + b"x" * _wire.MAX_FRAME_BYTES + b'"', False, "exceeds the limit"),
])
def test_decodeRefusesBadFrames(payload, isBinary, message):
    """Each kind of malformed frame is refused with a message saying what is wrong."""
    with pytest.raises(ProtocolError, match=message):
        _wire.decode(payload, isBinary)


def test_callFrameFieldsCheckedWhenDecoded():
    """A call frame needs an integer id, a method string and an argument list: decode checks them, once."""
    for frame in [{"type": "call", "method": "m"},
                  {"type": "call", "id": "1", "method": "m"},
                  {"type": "call", "id": -1, "method": "m"},
                  {"type": "call", "id": 1, "method": 5},
                  {"type": "call", "id": 1, "method": "m", "args": {"a": 1}}]:
        malformed = _wire.decode(json.dumps(frame).encode(), False)
        assert isinstance(malformed, _wire.Malformed) and malformed.type == "call"
        assert isinstance(malformed.error, ProtocolError)
        assert malformed.id == (1 if frame.get("id") == 1 else None)
    assert _wire.decode(b'{"type": "call", "id": 3, "method": "m"}', False) == _wire.Call(3, "m", [], None)


class SendNowTests(SynchronousTestCase):
    """
    L{sendNow}: a frame goes straight to the socket when nothing waits
    before it, through the transport's buffer otherwise, in order.
    """

    def setUp(self):
        import socket as socketModule

        self.near, self.far = socketModule.socketpair()
        self.near.setblocking(False)
        self.addCleanup(self.near.close)
        self.addCleanup(self.far.close)
        self.written = []
        transport = self.transport = type("Transport", (), {})()
        transport.socket, transport.connected, transport.disconnecting = self.near, True, False
        transport.dataBuffer, transport.offset, transport._tempDataLen = b"", 0, 0

        def write(data):
            self.written.append(data)
            transport._tempDataLen += len(data)

        transport.write = write

    def test_straightToTheSocket(self):
        from chatthing.live._sending import sendNow

        self.assertEqual(sendNow(self.near, self.transport, b"hello"), 0)
        self.assertEqual(self.far.recv(100), b"hello")
        self.assertEqual(self.written, [])

    def test_behindBufferedBytes(self):
        """Bytes already buffered go first: the frame joins them, in order."""
        from chatthing.live._sending import sendNow

        self.transport.write(b"first")
        self.assertEqual(sendNow(self.near, self.transport, b"second"), len(b"firstsecond"))
        self.assertEqual(self.written, [b"first", b"second"])

    def test_whatTheKernelRefusesIsBuffered(self):
        """A socket that takes part of a frame: the rest waits in the transport."""
        from chatthing.live._sending import sendNow

        big = b"x" * (16 * 1024 * 1024)
        left = sendNow(self.near, self.transport, big)
        self.assertTrue(0 < left < len(big))
        self.assertEqual(b"".join(self.written), big[len(big) - left:])

    def test_notDirectGoesThroughTheTransport(self):
        """A transport that may not be sent to directly (TLS, or unknown) gets the frame through write()."""
        from chatthing.live._sending import sendNow

        self.assertEqual(sendNow(None, self.transport, b"hello"), len(b"hello"))
        self.assertEqual(sendNow(None, self.transport, b"again"), len(b"helloagain"))
        self.assertEqual(self.written, [b"hello", b"again"])


class _Gathering:
    """A connection that records what a L{WriteCoalescer} writes to it."""

    gathered = None

    def __init__(self, log, name):
        self.log, self.name = log, name

    def writeCoalesced(self, data):
        self.log.append((self.name, data))


class WriteCoalescerTests(SynchronousTestCase):
    """
    L{WriteCoalescer}: what one reactor turn produces for a connection goes
    out in one write at the turn's end, in order; a connection's other
    writes flush it first.
    """

    def setUp(self):
        from chatthing.live._sending import WriteCoalescer

        self.clock = Clock()
        self.coalescer = WriteCoalescer(self.clock)
        self.writes = []
        self.alice, self.bob = _Gathering(self.writes, "alice"), _Gathering(self.writes, "bob")

    def test_oneWritePerConnectionPerTurn(self):
        for frame in (b"1", b"2", b"3"):
            self.coalescer.add(self.alice, frame)
            self.coalescer.add(self.bob, frame)
        self.assertEqual(self.writes, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.writes, [("alice", b"123"), ("bob", b"123")])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # The next turn starts afresh.
        self.coalescer.add(self.bob, b"4")
        self.clock.advance(0)
        self.assertEqual(self.writes[-1], ("bob", b"4"))

    def test_flushOneConnectionFirst(self):
        """A connection's own write (an answer, a close frame) comes after its gathered frames."""
        self.coalescer.add(self.alice, b"1")
        self.coalescer.add(self.bob, b"1")
        self.coalescer.flush(self.alice)
        self.assertEqual(self.writes, [("alice", b"1")])
        self.coalescer.flush(self.alice)  # nothing more
        self.coalescer.add(self.alice, b"2")  # gathered again, after the flush
        self.clock.advance(0)
        self.assertEqual(sorted(self.writes), [("alice", b"1"), ("alice", b"2"), ("bob", b"1")])
        self.assertEqual([w for w in self.writes if w[0] == "alice"], [("alice", b"1"), ("alice", b"2")])
        self.assertIsNone(self.alice.gathered)


class _Broken:
    gathered = None

    def writeCoalesced(self, data):
        raise RuntimeError("broken connection")


def test_coalescerKeepsOthersFramesWhenOneConnectionFails():
    """A connection whose write raises is logged; the frames of the connections after it still go out."""
    from twisted.logger import globalLogPublisher

    from chatthing.live._sending import WriteCoalescer

    clock, writes, events = Clock(), [], []
    coalescer = WriteCoalescer(clock)
    coalescer.add(_Broken(), b"1")
    coalescer.add(_Gathering(writes, "bob"), b"1")
    globalLogPublisher.addObserver(events.append)
    try:
        clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert writes == [("bob", b"1")]
    assert any("could not write" in e.get("log_format", "") for e in events)


# The runtime stands alone (issue 13, item 4)

_LIVE = __import__("pathlib").Path(__file__).resolve().parent.parent / "chatthing" / "live"


def _importsOf(path) -> list[str]:
    """The modules a source file imports, relative ones made absolute."""
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ["chatthing", "live"][: max(0, 3 - node.level)] if node.level else []
            if node.level > 2:
                base = []
            names.append(".".join(base + ([node.module] if node.module else [])))
    return names


def test_runtimeImportsNothingElseOfChatthing():
    """No module of chatthing/live/ imports a chatthing module outside chatthing.live (the assets included)."""
    outside = {
        (path.name, name)
        for path in sorted(_LIVE.glob("*.py"))
        for name in _importsOf(path)
        if (name == "chatthing" or name.startswith("chatthing."))
        and not (name == "chatthing.live" or name.startswith("chatthing.live."))
    }
    assert outside == set()


def test_runtimeImportedAloneLoadsOnlyItself():
    """A fresh interpreter importing chatthing.live and its modules loads no other chatthing module."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys, chatthing.live as live\n"
            "for m in pkgutil.iter_modules(live.__path__, 'chatthing.live.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n.startswith('chatthing')"
            " and n != 'chatthing' and not n.startswith('chatthing.live')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(_LIVE.parent.parent), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_assetFolderIsPublic():
    """chatthing.live.assetFolder finds the project's templates/ and js/ (the runtime's own modules in js/live/)."""
    from chatthing.live import assetFolder

    assert (assetFolder("js") / "live" / "index.js").is_file()
    assert assetFolder("templates").is_dir()
    with pytest.raises(FileNotFoundError):
        assetFolder("no-such-folder")
