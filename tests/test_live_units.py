"""
Unit tests of the live runtime with no sockets: an element, its session, and
frames collected in a list.
"""

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
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
    expose,
)
from chatthing.live import _wire
from chatthing.live._session import LiveSession


class Sorry(CallRefused):
    """An application's own refusal."""


class Calculator(LiveElement):
    """An element with one exposed method of each kind."""

    def __init__(self):
        self.waiting = Deferred()
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


class Refusals(list):
    def __call__(self, ident, error):
        self.append((ident, error))


def attach(element):
    frames, refusals = [], Refusals()
    session = LiveSession("s1", element, frames.append, refusals)
    element._liveAttach(session)
    return session, frames, refusals


def call(session, method, *args, ident=7):
    session.receive({"type": "call", "id": ident, "method": method, "args": list(args)})


class ExposedCallTests(SynchronousTestCase):
    def setUp(self):
        self.element = Calculator()
        self.session, self.frames, self.refusals = attach(self.element)

    def test_connectedHook(self):
        """Attaching an element runs its connected() hook."""
        self.assertEqual(self.element.hooks, ["connected"])

    def test_result(self):
        """An exposed method's return value goes back as the call's result."""
        call(self.session, "add", 2, 3)
        self.assertEqual(self.frames, [{"type": "result", "id": 7, "value": 5}])

    def test_defaultArgument(self):
        """Optional parameters may be left out."""
        call(self.session, "add", 2)
        self.assertEqual(self.frames[-1]["value"], 3)

    def test_deferredResult(self):
        """A Deferred result is answered when it fires, not before."""
        call(self.session, "later")
        self.assertEqual(self.frames, [])
        self.element.waiting.callback("done")
        self.assertEqual(self.frames, [{"type": "result", "id": 7, "value": "done"}])

    def test_coroutineResult(self):
        """A coroutine method is awaited."""
        call(self.session, "asynchronously", "ab")
        self.assertEqual(self.frames[-1], {"type": "result", "id": 7, "value": "abab"})

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
        """An application's CallRefused goes to the page by class name and message."""
        call(self.session, "refuse")
        self.assertEqual(self.frames, [])
        [(ident, error)] = self.refusals
        self.assertEqual(ident, 7)
        self.assertIsInstance(error, Sorry)

    def test_unexpectedError(self):
        """A bug's exception is logged with its traceback and reported by name, no traceback sent."""
        call(self.session, "crash")
        self.assertEqual(
            self.frames,
            [{"type": "error", "id": 7,
              "error": {"name": "ZeroDivisionError", "message": "division by zero"}}],
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unknownFrameType(self):
        """An unknown frame type is a ProtocolError."""
        with self.assertRaises(ProtocolError):
            self.session.receive({"type": "dance"})

    def test_answerAfterDetachIsDropped(self):
        """A result ready after the page left is not sent."""
        call(self.session, "later")
        self.session.detach(Failure(ConnectionDone()))
        self.element.waiting.callback("late")
        self.assertEqual(self.frames, [])


class CallRemoteTests(SynchronousTestCase):
    def setUp(self):
        self.element = Calculator()
        self.session, self.frames, self.refusals = attach(self.element)

    def test_callFrame(self):
        """callRemote sends a numbered call frame."""
        self.element.callRemote("show", "a", 1)
        self.element.callRemote("show")
        self.assertEqual(self.frames, [
            {"type": "call", "id": 0, "method": "show", "args": ["a", 1]},
            {"type": "call", "id": 1, "method": "show", "args": []},
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
        self.session.detach(Failure(ConnectionDone()))
        self.failureResultOf(d, ElementDetached)

    def test_callAfterDetachFailsFast(self):
        """After the page has gone, callRemote fails at once and sends nothing."""
        self.session.detach(Failure(ConnectionDone()))
        self.failureResultOf(self.element.callRemote("show"), ElementDetached)
        self.assertEqual(self.frames, [])

    def test_callBeforeAttachFailsFast(self):
        """An element that has no page yet cannot call it."""
        self.failureResultOf(Calculator().callRemote("show"), ElementDetached)

    def test_disconnectHooks(self):
        """Detaching runs disconnected() once and fires every notifyOnDisconnect()."""
        before = self.element.notifyOnDisconnect()
        self.session.detach(Failure(ConnectionDone()))
        self.session.detach(Failure(ConnectionDone()))
        after = self.element.notifyOnDisconnect()
        self.assertEqual(self.element.hooks, ["connected", ("disconnected", ConnectionDone)])
        self.assertIsInstance(self.successResultOf(before), ConnectionDone)
        self.assertIsInstance(self.successResultOf(after), ConnectionDone)


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


def test_parseCallChecksFields():
    """A call frame needs an integer id, a method string and an argument list."""
    for frame in [{"type": "call", "method": "m"},
                  {"type": "call", "id": "1", "method": "m"},
                  {"type": "call", "id": -1, "method": "m"},
                  {"type": "call", "id": 1, "method": 5},
                  {"type": "call", "id": 1, "method": "m", "args": {"a": 1}}]:
        with pytest.raises(ProtocolError):
            _wire.parseCall(frame)
    assert _wire.parseCall({"type": "call", "id": 3, "method": "m"}) == (3, "m", [])
