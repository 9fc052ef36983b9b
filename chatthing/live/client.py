"""
A program's connection to a live element: the live protocol's client half,
in Python, for bots, load generators and other programs (the browser's is
C{js/live/socket.js}, which this follows).

    client = LiveClient("ws://127.0.0.1:8080/live", receiver=lambda method, args: print(method, args))
    await client.connect()                 # hello, welcome
    name = await client.callRemote("setUsername", "robot")
    ...
    await client.close()                   # leave: the session ends at once

It numbers what it sends and keeps it until the server acknowledges it,
acknowledges what it receives, drops frames it has already had (by C{seq}
and by stream offset), and when the connection drops it reconnects by
itself, with back-off and jitter, and resumes the session: calls made while
it was down are sent then, and nothing is received twice or missed.  If the
server no longer has the session, a new one starts: the calls still waiting
fail with L{ConnectionLost}, and the C{onWelcome} listeners are told so the
program can start over (log in again, say).

C{docs/protocol.md} is the specification.  For tests that need to break the
protocol on purpose, use L{chatthing.live.testing.LiveTestClient} instead.
"""

import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._backoff import Backoff
from ._errors import LiveError, RemoteError
from ._factory import _ExactTimer
from ._ledger import SessionLedger
from ._reactor import defaultReactor
from ._replay import AckSchedule
from ._wire import PROTOCOL_VERSION

__all__ = ["Backoff", "ConnectionLost", "LiveClient", "State"]

#: The close code of a connection replaced by a newer one resuming its session.
SUPERSEDED = 4001

#: Connections lost or refused in a row, on one URL, after which the client
#: tries the next of the cluster's public URLs (the welcome's C{urls}).
FAILOVER_AFTER = 2


class ConnectionLost(LiveError):
    """
    The session ended (the client closed, or the server could not resume it)
    before the call was answered.
    """


class State:
    """
    The states of a L{LiveClient}'s connection.
    """

    #: Opening the first connection.
    CONNECTING = "connecting"
    #: Talking to the element.
    CONNECTED = "connected"
    #: The connection dropped; trying again, with back-off.
    RECONNECTING = "reconnecting"
    #: Closed on purpose, replaced by a newer connection, or never opened.
    DISCONNECTED = "disconnected"


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._received(self, payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(self, code, reason)


class _Factory(WebSocketClientFactory):
    protocol = _Protocol
    client: "LiveClient"

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.client._connectionFailed(self, reason)


Receiver = Callable[[str, list], Any]


class LiveClient:
    """
    One page's session with a live element, kept across reconnections.

    @ivar receiver: called as C{receiver(method, args)} for every call the
        server makes to the page's widget, directly or through a stream;
        for a direct call, its return value (or a L{Deferred} of it) is the
        answer, and an exception it raises is sent back as an error.
    @ivar state: one of the L{State} names.
    @ivar ledger: the session's numbering (L{SessionLedger}), for reconnections.
    @ivar welcome: the latest C{welcome} frame.
    """

    log = Logger()

    def __init__(
        self, url: str, receiver: Receiver | None = None, *, page: str = "/",
        reactor: Any = None, backoff: Backoff | None = None, origin: str | None = None,
        pingInterval: float = 15.0, pingTimeout: float = 10.0,
    ) -> None:
        """
        @param url: the server's WebSocket, C{ws://host:port/live} (or C{wss:}).
        @param receiver: see L{receiver}; by default calls are answered with C{None}.
        @param page: the page path sent in C{hello}, which some applications
            use to choose what the page shows (a room, say).
        @param pingInterval: seconds after connecting, and after each
            answer, before this client pings the server again, and
            C{pingTimeout} to answer (any frame from the server will do), so
            a dead server is noticed (and reconnected to) even when TCP says
            nothing.
        """
        self.url = url
        #: Where to connect: C{url}, then the cluster's other public URLs
        #: from the welcome (its C{urls}); see L{FAILOVER_AFTER}.
        self.urls = [url]
        self._failures = 0
        self.receiver: Receiver = receiver or (lambda method, args: None)
        self.page = page
        self.reactor = defaultReactor(reactor)
        self.backoff = backoff or Backoff()
        self.origin = origin
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.state = State.CONNECTING
        self.ledger = SessionLedger()
        self.welcome: dict[str, Any] | None = None
        self.protocol: _Protocol | None = None
        self._leaving = False
        self._retry: Any = None
        self._nextCallId = 0
        self._awaiting: dict[int, Deferred] = {}
        self._acks = AckSchedule(self.reactor, self._acknowledge)
        self._firstWelcome: Deferred | None = None
        self._closeWaiters: list[Deferred] = []
        self._welcomeListeners: list[Callable[[dict], Any]] = []
        #: Each epoch the server's store named in a welcome or resumed, as
        #: it changed: more than one, and it lost history meanwhile.
        self.epochs: list[str] = []
        self._stateListeners: list[Callable[[str], Any]] = []

    def __repr__(self) -> str:
        return f"<LiveClient {self.url} {self.state}>"

    @property
    def session(self) -> str | None:
        """
        The session's id, once welcomed.
        """
        return self.ledger.session

    # The public API

    def connect(self) -> Deferred:
        """
        Open the connection, and keep it open until L{close}.

        @return: a L{Deferred} firing with the first C{welcome} frame, or
            failing with L{ConnectionError} if the first connection cannot
            be made (later drops are retried by themselves).
        """
        self._leaving = False
        self._firstWelcome = Deferred()
        self._setState(State.CONNECTING)
        self._open()
        return self._firstWelcome

    def callRemote(self, method: str, *args: Any) -> Deferred:
        """
        Call the element's exposed C{method}.  While the connection is down
        the call waits, and is sent when the session resumes.

        @return: a L{Deferred} firing with its return value, or failing with
            L{RemoteError} (C{name} is the server's error class name, such as
            C{"UsernameTaken"}) or L{ConnectionLost}.
        """
        if self._leaving:
            return fail(ConnectionLost(f"cannot call {method}(): the client has closed"))
        ident = self._nextCallId
        self._nextCallId += 1
        d: Deferred = Deferred()
        self._awaiting[ident] = d
        self._sendNumbered({"type": "call", "id": ident, "method": method, "args": list(args)})
        return d

    def onWelcome(self, listener: Callable[[dict], Any]) -> None:
        """
        Call C{listener(welcome)} when a session starts: the first, and any
        that replaces one the server could not resume (then
        C{welcome["expired"]} says why, and the program should start over).
        """
        self._welcomeListeners.append(listener)

    def onStateChange(self, listener: Callable[[str], Any]) -> None:
        """
        Call C{listener(state)} on every change of L{state}.
        """
        self._stateListeners.append(listener)

    def close(self) -> Deferred:
        """
        Leave on purpose: the server ends the session at once, and this
        client does not reconnect.  Calls still waiting fail with
        L{ConnectionLost}.

        @return: a L{Deferred} firing once the connection has closed.
        """
        self._leaving = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self.protocol is None:
            self._stopped(ConnectionLost("the client has closed"))
            return succeed(None)
        d: Deferred = Deferred()
        self._closeWaiters.append(d)
        self._sendNow({"type": "leave"})
        self.protocol.sendClose(1000, "client closed")
        return d

    def retryNow(self) -> None:
        """
        If waiting to reconnect, try now rather than when the back-off says.
        """
        if self.state == State.RECONNECTING and self._retry is not None and self._retry.active():
            self._retry.cancel()
            self._open()

    def drop(self) -> None:
        """
        Break the connection with no closing handshake, as a failing network
        does; the client reconnects and resumes.  For tests and drills.
        """
        if self.protocol is not None and self.protocol.transport is not None:
            cast(ITCPTransport, self.protocol.transport).abortConnection()

    # The connection

    def _open(self) -> None:
        self._retry = None
        factory = _Factory(self.url, origin=self.origin, reactor=self.reactor)
        # Autobahn's ping and handshake timers, on this client's reactor
        # rather than txaio's global one.
        factory._batched_timer = _ExactTimer(self.reactor)
        factory.client = self
        factory.setProtocolOptions(autoPingInterval=self.pingInterval,
                                   autoPingTimeout=self.pingTimeout)
        self._factory = factory
        parts = urlsplit(self.url)
        if factory.isSecure:
            from twisted.internet.ssl import optionsForClientTLS

            self.reactor.connectSSL(factory.host, factory.port, factory,
                                    optionsForClientTLS(parts.hostname or factory.host))
        else:
            self.reactor.connectTCP(factory.host, factory.port, factory)

    def _opened(self, protocol: _Protocol) -> None:
        self.protocol = protocol
        if self._leaving:  # closed while this connection was being made
            protocol.sendClose(1000, "client closed")
            return
        hello: dict[str, Any] = {"type": "hello", "version": PROTOCOL_VERSION,
                                 "page": self.page, "render": False}
        if self.session is not None:
            hello["resume"] = self.ledger.resumeRequest()
        self._sendNow(hello)

    def _connectionFailed(self, factory: _Factory, reason: Failure) -> None:
        if factory is self._factory:
            self._lost(None, reason.getErrorMessage())

    def _closed(self, protocol: _Protocol, code: int | None, reason: str | None) -> None:
        if protocol is not self.protocol and self.protocol is not None:
            return
        if self.protocol is None and protocol.factory is not self._factory:
            return
        self.protocol = None
        self._lost(code, reason)

    def _lost(self, code: int | None, reason: str | None) -> None:
        self._acks.cancel()
        if self._leaving:
            self._stopped(ConnectionLost("the client has closed"))
        elif self.session is None:
            # The first connection failed: say so rather than retry forever.
            self._stopped(ConnectionError(f"could not connect to {self.url}: {code} {reason}"))
        elif code == SUPERSEDED:
            self._stopped(ConnectionLost("the session was resumed by another connection"))
        else:
            self._setState(State.RECONNECTING)
            self._failedOnce()
            delay = self.backoff.next()
            self.log.info("{client}: connection lost ({code} {reason}); retrying in {delay:.2f}s",
                          client=self, code=code, reason=reason, delay=delay)
            self._retry = self.reactor.callLater(delay, self._open)

    def _stopped(self, reason: Exception) -> None:
        self._setState(State.DISCONNECTED)
        waiting, self._awaiting = self._awaiting, {}
        self.ledger.forgetSent()
        if self._firstWelcome is not None and not self._firstWelcome.called:
            self._firstWelcome.errback(reason)
        for d in waiting.values():
            d.errback(ConnectionLost(str(reason)))
        closeWaiters, self._closeWaiters = self._closeWaiters, []
        for d in closeWaiters:
            d.callback(None)

    # Receiving

    def _received(self, protocol: _Protocol, payload: bytes) -> None:
        if protocol is not self.protocol:
            return
        try:
            frame = json.loads(payload)
            kind = frame["type"]
        except (ValueError, TypeError, KeyError):
            self.log.warn("{client}: ignoring a malformed frame {payload!r}", client=self,
                          payload=payload[:200])
            return
        if kind in ("welcome", "resumed", "epoch") and frame.get("epoch") not in (None, *self.epochs[-1:]):
            self.epochs.append(frame["epoch"])
        if kind == "welcome":
            self._welcomed(frame)
        elif kind == "resumed":
            # What waited goes first, in order (see SessionLedger.resumed).
            for data in self.ledger.resumed(frame):
                self._sendBytes(data)
            self._connected()
        elif kind == "ack":
            self.ledger.acknowledged(frame["seq"])
        elif kind in ("emit", "call", "result", "error"):
            if not self.ledger.accept(frame):
                return  # sent again after a reconnection; already run
            if "seq" in frame:
                self._acks.received()
            if kind == "emit":
                # One-way: a stream's, a passing event, or for this page only.
                self._run(frame, answered=False)
            else:
                self._direct(frame)
        else:
            self.log.debug("{client}: ignoring a {kind!r} frame", client=self, kind=kind)

    def _welcomed(self, frame: dict[str, Any]) -> None:
        if self.session is not None:
            # The server could not resume the session: what waited for it is lost.
            lost = ConnectionLost(f"the session ended: {frame.get('expired', 'expired')}")
            waiting, self._awaiting = self._awaiting, {}
            self.ledger.forgetSent()
            for d in waiting.values():
                d.errback(lost)
        self.ledger.welcomed(frame["session"])
        self.welcome = frame
        urls = frame.get("urls")
        if isinstance(urls, list):
            self._useUrls([url for url in urls if isinstance(url, str)])
        # Calls made before the first welcome go to this session, first.
        for data in self.ledger.kept():
            self._sendBytes(data)
        self._connected()
        if self._firstWelcome is not None and not self._firstWelcome.called:
            self._firstWelcome.callback(frame)
        self._tell(self._welcomeListeners, frame, "welcome")

    def _useUrls(self, urls: list[str]) -> None:
        """
        The cluster's public URLs: this client's own first, then the others
        in the order given after it (so that the clients of a dead process
        spread over the others instead of all moving to the same one).
        """
        mine = urls.index(self.url) if self.url in urls else -1
        after = urls[mine + 1:] + urls[:max(mine, 0)]
        self.urls = [self.url] + [url for url in dict.fromkeys(after) if url != self.url]

    def _failedOnce(self) -> None:
        """
        One more connection lost, or not made, since the last that worked:
        after L{FAILOVER_AFTER} in a row, try the next of L{urls}.
        """
        self._failures += 1
        if self._failures >= FAILOVER_AFTER and len(self.urls) > 1:
            self._failures = 0
            index = self.urls.index(self.url) if self.url in self.urls else -1
            self.url = self.urls[(index + 1) % len(self.urls)]
            self.log.info("{client}: failing over to {url}", client=self, url=self.url)

    def _connected(self) -> None:
        self._failures = 0
        self.backoff.reset()
        self._setState(State.CONNECTED)

    def _direct(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "call":
            self._run(frame, answered=True)
            return
        ident = frame.get("id")
        d = self._awaiting.pop(ident, None) if isinstance(ident, int) else None
        if kind == "result":
            if d is not None:
                d.callback(frame.get("value"))
            return
        error = frame.get("error") or {}
        remote = RemoteError(str(error.get("name", "Error")), str(error.get("message", "")))
        if d is not None:
            d.errback(remote)
        else:
            self.log.warn("{client}: the server reported {error}", client=self, error=remote)

    def _run(self, frame: dict[str, Any], answered: bool) -> None:
        method, args = str(frame.get("method")), frame.get("args")
        d = maybeDeferred(self.receiver, method, args if isinstance(args, list) else [])
        if answered:
            ident = frame.get("id")

            def answer(value: Any) -> None:
                self._sendNumbered({"type": "result", "id": ident, "value": value})

            def refuse(failure: Failure) -> None:
                error = {"name": type(failure.value).__name__,
                         "message": str(failure.value)}
                self._sendNumbered({"type": "error", "id": ident, "error": error})

            d.addCallbacks(answer, refuse)
        d.addErrback(lambda failure: self.log.failure(
            "{client}: {method}() failed", failure, client=self, method=method))

    # Sending, numbering and acknowledgement

    def _sendNumbered(self, frame: dict[str, Any]) -> None:
        data = self.ledger.number(frame)
        if self.state == State.CONNECTED:
            self._sendBytes(data)

    def _sendNow(self, frame: dict[str, Any]) -> None:
        self._sendBytes(json.dumps(frame).encode("utf-8"))

    def _sendBytes(self, data: bytes) -> None:
        # Not once closing (what is numbered is kept, and sent again after
        # a reconnection).
        if self.protocol is not None and self.protocol.state == self.protocol.STATE_OPEN:
            self.protocol.sendMessage(data, isBinary=False)

    def _acknowledge(self) -> None:
        self._sendNow({"type": "ack", "seq": self.ledger.receivedSeq})

    def _setState(self, state: str) -> None:
        if self.state == state:
            return
        self.state = state
        self._tell(self._stateListeners, state, "state")

    def _tell(self, listeners: list[Callable[[Any], Any]], news: Any, kind: str) -> None:
        """
        Call each of C{listeners} (of C{kind}) with C{news}: one that raises
        is logged, and the others are told all the same.
        """
        for listener in list(listeners):
            try:
                listener(news)
            except Exception:
                self.log.failure("{client}: {kind} listener failed", client=self, kind=kind)
