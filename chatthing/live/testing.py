"""
A WebSocket client of the live protocol, for testing live applications
against a real server, as C{treq.testing} serves treq's users.

    client = await LiveTestClient.connect("ws://127.0.0.1:8080/live")
    await client.call("setUsername", "alice")
    await client.waitFor(lambda: client.calls("displayMessage"))
    client.drop()                       # the network fails...
    await client.resume()               # ...and the page comes back

It speaks the protocol as the browser's runtime does: it numbers its
frames, acknowledges the server's, answers the server's calls (with C{null},
or what C{answer} returns), and resumes its session after a drop, so a test
can check that a page's transcript holds every message exactly once.
"""

import json
from typing import Any, Callable, cast

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport

from ._factory import _ExactTimer
from ._ledger import SessionLedger
from ._reactor import defaultReactor
from ._wire import PROTOCOL_VERSION

#: Seconds a test waits for a condition before it fails.
DEFAULT_DEADLINE = 10.0

#: Return this from C{answer} to leave a call unanswered.
HOLD = object()


class _Factory(WebSocketClientFactory):
    #: The client whose connections this factory makes.
    client: "LiveTestClient"


class _Protocol(WebSocketClientProtocol):
    factory: _Factory

    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.factory.client.protocol is self:
            self.factory.client._received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(self, code, reason)


class LiveTestClient:
    """
    One page's connection to a live server, across reconnections.

    @ivar frames: every frame received, decoded, in order; frames the server
        sent twice (which it never should) are left out and counted in
        C{duplicates}.
    @ivar welcome: the latest welcome frame.
    @ivar ledger: the session's numbering (L{SessionLedger}); C{session},
        C{receivedSeq} and C{offsets} read from it.
    @ivar closeCode: the latest connection's close code once closed.
    @ivar answer: called with C{(method, args)} for each server call; its
        return value is sent back as the call's result (L{HOLD}: no answer).
    @ivar autoAck: whether each numbered frame received is acknowledged at
        once; C{False} leaves every frame to the test (C{send}, L{ack}), to
        play a written exchange frame by frame.
    """

    def __init__(self, url: str, reactor: Any = None, origin: str | None = None,
                 contextFactory: Any = None) -> None:
        self.url = url
        self.origin = origin
        #: For a C{wss:} URL: the TLS options to connect with (e.g.
        #: C{optionsForClientTLS} trusting a test's own certificate).
        self.contextFactory = contextFactory
        self.reactor = defaultReactor(reactor)
        self.frames: list[dict[str, Any]] = []
        self.duplicates = 0
        self.closeCode: int | None = None
        self.closeReason: str | None = None
        self.isClosed = False
        self.welcome: dict[str, Any] | None = None
        self.answer: Callable[[str, list], Any] = lambda method, args: None
        self.autoAck = True
        self.protocol: _Protocol | None = None
        self.ledger = SessionLedger()
        self._nextId = 0
        self._resuming = False
        self._waiters: list[tuple[Callable[[], Any], Deferred]] = []
        self._connected: Deferred | None = None

    @property
    def session(self) -> str | None:
        return self.ledger.session

    @property
    def receivedSeq(self) -> int:
        return self.ledger.receivedSeq

    @property
    def offsets(self) -> dict[str, int]:
        return self.ledger.offsets

    @classmethod
    async def connect(
        cls, url: str, hello: dict[str, Any] | bool | None = None, origin: str | None = None,
        reactor: Any = None, contextFactory: Any = None,
    ) -> "LiveTestClient":
        """
        Connect to C{url} and, unless C{hello} is C{False}, say hello (with
        the fields of C{hello}) and wait for the welcome.  For a C{wss:}
        URL, C{contextFactory} gives the TLS options.
        """
        client = cls(url, reactor, origin, contextFactory)
        await client._open()
        if hello is not False:
            client.send({"type": "hello", "version": PROTOCOL_VERSION, "render": False,
                         **(hello if isinstance(hello, dict) else {})})
            await client._welcomed()
        return client

    async def _open(self) -> None:
        # connectWS connects with the factory's reactor: this client's.
        factory = _Factory(self.url, origin=self.origin, reactor=self.reactor)
        factory.protocol = _Protocol
        factory._batched_timer = _ExactTimer(self.reactor)
        # A browser waits for the server's closing reply; Autobahn's default
        # of one second aborts the connection instead, and an abort (a RST)
        # can discard the close frame still unread at the server, which then
        # takes a page that left on purpose for a dropped one.
        factory.setProtocolOptions(closeHandshakeTimeout=DEFAULT_DEADLINE)
        factory.client = self
        self._connected = Deferred()
        self.isClosed = False
        connectWS(factory, self.contextFactory)
        await self._withDeadline(self._connected, f"connecting to {self.url}")

    async def _welcomed(self) -> dict[str, Any]:
        count = len([f for f in self.frames if f["type"] in ("welcome", "resumed")])

        def newWelcome() -> dict[str, Any] | None:
            welcomes = [f for f in self.frames if f["type"] in ("welcome", "resumed")][count:]
            return welcomes[0] if welcomes else None

        frame = await self.waitFor(newWelcome, "a welcome")
        again = []
        if frame["type"] == "welcome":
            self.welcome = frame
            self.ledger.welcomed(frame["session"])
            self.ledger.forgetSent()
        else:
            again = self.ledger.resumed(frame)
        # Frames kept while resuming go first, in order; then new ones are
        # sent as they come.
        self._resuming = False
        for payload in again:
            self.sendRaw(payload)
        return frame

    # Sending

    def send(self, frame: Any) -> None:
        """
        Send C{frame} as JSON text, unnumbered.
        """
        self.sendRaw(json.dumps(frame).encode("utf-8"))

    def sendNumbered(self, frame: dict[str, Any]) -> None:
        """
        Number C{frame} and keep it until the server acknowledges it, so it
        is sent again after a reconnection.
        """
        payload = self.ledger.number(frame)
        # While a resume is under way, the kept frames must be re-sent first:
        # the session runs each number once, so a newer frame arriving before
        # them would make it skip them.
        if self.protocol is not None and not self._resuming:
            self.sendRaw(payload)

    def sendRaw(self, payload: bytes, isBinary: bool = False) -> None:
        """
        Send C{payload} as it is: for testing what the server does with bad frames.
        """
        assert self.protocol is not None, "not connected"
        self.protocol.sendMessage(payload, isBinary=isBinary)

    async def call(self, method: str, *args: Any) -> dict[str, Any]:
        """
        Call C{method} on the element; the answering C{result} or C{error} frame.
        """
        ident = self.startCall(method, *args)
        return await self.answerTo(ident, f"an answer to {method}()")

    def startCall(self, method: str, *args: Any) -> int:
        """
        Send a call without waiting for its answer; its id.
        """
        ident = self._nextId
        self._nextId += 1
        self.sendNumbered({"type": "call", "id": ident, "method": method, "args": list(args)})
        return ident

    async def answerTo(self, ident: int, what: str = "an answer",
                       deadline: float = DEFAULT_DEADLINE) -> dict[str, Any]:
        return await self.nextFrame(
            lambda f: f["type"] in ("result", "error") and f.get("id") == ident and "seq" in f,
            what, deadline,
        )

    def ack(self) -> None:
        """
        Tell the server every frame received so far has arrived.
        """
        # Not once closing: a frame that arrives after our close frame is
        # not acknowledged (a browser drops what it sends then).
        if self.protocol is not None and self.protocol.state == self.protocol.STATE_OPEN:
            self.send({"type": "ack", "seq": self.ledger.receivedSeq})

    def close(self, code: int = 1000) -> None:
        """
        Close the connection on purpose (the page is leaving).
        """
        if self.protocol is not None:
            self.protocol.sendClose(code)

    def drop(self) -> None:
        """
        Break the connection with no closing handshake, as a failing network does.
        """
        if self.protocol is not None and self.protocol.transport is not None:
            cast(ITCPTransport, self.protocol.transport).abortConnection()

    async def reconnect(self) -> None:
        """
        Open a new connection (dropping the current one, if any) and say
        nothing on it: the test sends its own C{hello}.
        """
        if self.protocol is not None and not self.isClosed:
            self.drop()
            await self.closed()
        await self._open()

    async def resume(self) -> dict[str, Any]:
        """
        Reconnect and ask to resume the session; the C{resumed} frame, or
        the C{welcome} of a new session if the server could not resume.
        """
        if not self.isClosed:
            self.drop()
            await self.closed()
        self._resuming = True
        await self._open()
        self.send({"type": "hello", "version": PROTOCOL_VERSION, "render": False,
                   "resume": self.ledger.resumeRequest()})
        return await self._welcomed()

    # Reading

    def calls(self, method: str | None = None) -> list[list[Any]]:
        """
        The arguments of each call the server made (to C{method}), directly
        or through a stream, in order.
        """
        return [
            f["args"] for f in self.frames
            if f["type"] in ("call", "emit") and (method is None or f.get("method") == method)
        ]

    def errors(self) -> list[dict[str, Any]]:
        """
        Every error frame received.
        """
        return [f for f in self.frames if f.get("type") == "error"]

    async def nextFrame(
        self, predicate: Callable[[dict], bool], what: str = "a frame",
        deadline: float = DEFAULT_DEADLINE,
    ) -> dict[str, Any]:
        """
        The first frame received, now or later, for which C{predicate} holds.
        """
        def found() -> dict[str, Any] | None:
            return next((f for f in self.frames if predicate(f)), None)

        return await self.waitFor(found, what, deadline)

    async def waitFor(
        self, condition: Callable[[], Any], what: str = "a condition",
        deadline: float = DEFAULT_DEADLINE,
    ) -> Any:
        """
        Wait until C{condition()} is true (checked on each frame and on close),
        returning its value; fail with C{TimeoutError} after C{deadline} seconds.
        """
        value = condition()
        if value:
            return value
        d: Deferred = Deferred()
        self._waiters.append((condition, d))
        return await self._withDeadline(d, what, deadline)

    async def closed(self, deadline: float = DEFAULT_DEADLINE) -> int | None:
        """
        Wait for the connection to close; the close code.
        """
        await self.waitFor(lambda: self.isClosed, "the connection to close", deadline)
        return self.closeCode

    # Protocol callbacks

    def _opened(self, protocol: _Protocol) -> None:
        self.protocol = protocol
        if self._connected is not None:
            self._connected.callback(None)

    def _received(self, payload: bytes, isBinary: bool) -> None:
        frame = json.loads(payload)
        if not self.ledger.accept(frame):
            self.duplicates += 1
            return
        self.frames.append(frame)
        kind = frame.get("type")
        if kind == "ack":
            self.ledger.acknowledged(frame["seq"])
        if self.autoAck and "seq" in frame and kind != "ack" and kind != "resumed":
            self.ack()
        if kind in ("call", "emit") and isinstance(frame.get("id"), int):
            value = self.answer(frame["method"], frame["args"])
            if value is not HOLD:
                self.sendNumbered({"type": "result", "id": frame["id"], "value": value})
        self._check()

    def _closed(self, protocol: _Protocol, code: int | None, reason: str | None) -> None:
        if protocol is not self.protocol and self.protocol is not None:
            return
        self.closeCode, self.closeReason = code, reason
        self.protocol = None
        if self._connected is not None and not self._connected.called:
            self._connected.errback(ConnectionError(f"connection failed: {code} {reason}"))
        self.isClosed = True
        self._check()

    def _check(self) -> None:
        for entry in list(self._waiters):
            condition, d = entry
            value = condition()
            if value and entry in self._waiters:
                self._waiters.remove(entry)
                d.callback(value)

    async def _withDeadline(self, d: Deferred, what: str, deadline: float = DEFAULT_DEADLINE) -> Any:
        def tooLate() -> None:
            if not d.called:
                d.errback(TimeoutError(f"waited {deadline}s for {what}"))

        timer = self.reactor.callLater(deadline, tooLate)
        try:
            return await d
        finally:
            if timer.active():
                timer.cancel()
            self._waiters = [(c, w) for c, w in self._waiters if w is not d]
