"""
The WebSocket end of the runtime: one L{LiveServerProtocol} per page
connection, made by the L{LiveServerFactory} of C{_factory}.
"""

import random
from typing import Any, Callable, cast

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._backlog import BacklogLimit, bufferedBytes
from ._budget import BudgetedFrames, wireBucket
from ._errors import LiveError, ProtocolError, RateLimited
from ._footprint import (
    CONNECTION_ATTRIBUTES,
    EVENTS,
    WhenFired,
    classDefaults,
    forgetHandshake,
    keepSendQueue,
    readOptionsFromFactory,
    shareEmptySendQueue,
    shareTrafficStats,
)
from ._handshake import Handshake
from ._logsafe import cut
from ._origin import originAllowed
from ._quiet import withoutDebugFormatting
from ._ratelimit import TokenBucket
from ._sending import canSendDirectly, sendNow
from ._session import LiveSession

#: Seconds a new connection has to send its "hello".
HELLO_TIMEOUT = 10.0


@readOptionsFromFactory
# Autobahn's two bases declare peer and _transport_details with different
# types (its own stubs disagree; mypy reports it on every subclass).
class LiveServerProtocol(BudgetedFrames, BacklogLimit, WebSocketServerProtocol):  # type: ignore[misc]
    """
    Reads frames from one page connection, answers bad ones with an error
    reply, and hands good ones to the page's L{LiveSession}; writes what the
    session sends, and cuts the connection if the page stops reading.
    What its frames may cost the server is kept to L{BudgetedFrames}'s
    budgets; what it may hold for the page, to L{BacklogLimit}'s.
    """

    liveLog = Logger()
    # The two a room's pass reads first, side by side (L{StreamRun}).
    __slots__ = ("gathered", "directSend") + CONNECTION_ATTRIBUTES + (
        "session", "_bucket", "_helloTimeout", "_leaving", "_cut", "_backlogCheck",
        "_floodReported", "adopting", "_ackBucket", "_wireBucket", "_oversize",
        "_socket")
    session: LiveSession | None
    #: The stream frames gathered for this connection this turn (L{WriteCoalescer}).
    gathered: list[bytes] | bytes | None
    _helloTimeout: Any
    _leaving: bool
    _cut: bool
    _backlogCheck: Any
    _floodReported: bool
    #: A session is being taken over for this page (L{Handshake}): until it
    #: is, the page may send nothing more.
    adopting: bool
    _bucket: TokenBucket
    #: The socket frames may go straight to (L{canSendDirectly}), decided
    #: once, when the connection opens; L{None} if not (never under TLS).
    _socket: Any
    #: C{_socket}'s C{send} while bytes may go straight to it, else
    #: L{None} (see L{CoalescedConnection.directSend}).
    directSend: Any
    _ackBucket: TokenBucket
    _wireBucket: TokenBucket | None
    _oversize: bool
    #: Where its Autobahn options are read (L{FactoryOption}).
    _options: Any

    #: Autobahn's Deferreds of the opening and the closing, made only if
    #: something reads them (see L{WhenFired}).
    is_open = WhenFired("_isOpen")
    is_closed = WhenFired("_isClosed")

    def __init__(self) -> None:
        for name, value in _INITIAL:
            setattr(self, name, value)
        # Not Autobahn's WebSocketProtocol.__init__ (the only __init__ of
        # the bases): _INITIAL sets what it would, without the two
        # Deferreds, the list, the dict and the TransportDetails it would
        # make for every connection: is_open and is_closed are made when
        # read, the event table is shared, and the transport's details
        # are made when the connection is (Autobahn's connectionMade).

    # What Twisted calls, without Autobahn's debug lines (L{_quiet}).
    connectionMade = withoutDebugFormatting(WebSocketServerProtocol.connectionMade)
    connectionLost = withoutDebugFormatting(WebSocketServerProtocol.connectionLost)

    @withoutDebugFormatting
    def dataReceived(self, data: bytes) -> None:
        # Autobahn's, without its debug line (formatted for every read).
        self._dataReceived(data)

    def _connectionMade(self) -> None:
        if self._options is None:
            self._options = self.factory  # made by another than its factory's buildProtocol
        super()._connectionMade()
        # Lent one per message instead (L{Validators}); counted with the
        # factory's other connections.
        self.utf8validator = None  # type: ignore[assignment]
        shareTrafficStats(self, self.factory.trafficStats)

    def onConnect(self, request: Any) -> None:
        settings = self.factory.settings
        origin = request.headers.get("origin")
        if not originAllowed(origin, request.headers.get("host"), settings.allowedOrigins):
            self.factory.logThrottle.warn(
                self.liveLog, "origin", "refused WebSocket from {peer}: origin {origin} not allowed",
                peer=request.peer, origin=cut(origin))
            self.factory.metrics.refused("OriginNotAllowed")
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        return None

    def onOpen(self) -> None:
        factory = self.factory
        forgetHandshake(self)
        shareEmptySendQueue(self)
        transport: Any = self.transport
        self._socket = transport.socket if canSendDirectly(transport) else None
        # Autobahn tries this before it has read its own options, and gives
        # up silently: Nagle's algorithm would stay on.
        # (Twisted types the transport as an ITransport; only a TCP one
        # has setTcpNoDelay.)
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        try:
            if setNoDelay is not None:
                setNoDelay(factory.settings.noDelay)
        except (AttributeError, OSError):
            pass  # not a TCP connection after all
        settings, clock = factory.settings, factory.clock
        self._bucket = TokenBucket(settings.frameRate, settings.frameBurst, clock)
        self._ackBucket = TokenBucket(settings.ackRate, settings.ackBurst, clock)
        self._wireBucket = wireBucket(settings, clock)
        self._helloTimeout = factory.timers.call_later(
            HELLO_TIMEOUT, self.closeWithCode, _wire.CLOSE_PROTOCOL_ERROR, "no hello frame received"
        )
        # Spread the heartbeats over the interval.  Autobahn arms a page's
        # first ping one whole interval after it opened, and each later one
        # an interval after its pong, so pages that opened together (after
        # a restart, a storm of logins, the bench's room) ping in the same
        # few ticks, and answer in the same turns, every interval for as
        # long as they stay: 1,000 pings and pongs at once kept the reactor
        # from the room's messages for tens of milliseconds
        # (docs/performance.md).
        first = self.autoPingPendingCall
        if first is not None:
            self.autoPingPendingCall = factory.timers.move(first, firstPingDelay(self.autoPingInterval))
        factory.connectionOpened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._cut:
            return
        frame: _wire.Frame | None = None
        try:
            try:
                frame = _wire.decode(payload, isBinary, self.factory.settings.maxFrameBytes)
            except LiveError:
                # Frames that are not even frames count against the limit
                # too, or a flood of garbage would be answered and logged
                # without limit.
                self._throttle()
                raise
            session = self.session
            if session is not None and type(frame) is _wire.Ack:
                # Acks have a rate of their own (a page acks a few times a
                # second); before hello, an ack is a frame like any other.
                if not self._ackBucket.take():
                    self._ackRefused()
                    return
            else:
                self._throttle()
            if session is None:
                if self.adopting:
                    raise ProtocolError("wait for the answer to hello before sending more")
                handshake: Handshake = self.factory.handshake
                handshake.hello(self, frame)
            else:
                session.receiveFrame(frame)
                if type(frame) is _wire.Leave:
                    self._leaving = True
                    self.sendClose(1000, "left")
        except LiveError as e:
            # Every refused frame is answered; a flood is logged only once.
            quiet = isinstance(e, RateLimited) and self._floodReported
            self._floodReported = self._floodReported or isinstance(e, RateLimited)
            # Only a call's id names the frame being refused: a "result" or
            # "error" carries the id of one of the server's calls, which the
            # page could mistake for one of its own.
            ident = (frame.id if type(frame) is _wire.Call
                     or (type(frame) is _wire.Malformed and frame.type == _wire.CALL) else None)
            refuser = self if self.session is None else self.session
            refuser.refuse(ident, e, quiet=quiet)

    def _throttle(self) -> None:
        bucket = self._bucket
        if bucket.take():
            # A flood is over once the page has kept under the rate long
            # enough to refill the bucket; until then, a frame let through
            # by a token that came back does not start a new flood (which
            # would log a line per refill during a sustained flood).
            if bucket.tokens >= bucket.burst - 1:
                self._floodReported = False
        else:
            raise RateLimited(
                f"too many frames: keep to {bucket.rate:g} a second "
                f"(bursts of {bucket.burst}); slow down"
            )

    # Nothing goes straight to the socket once the connection closes:
    # Autobahn sends the close frame while the state is still open, and
    # marks it closing only after.

    def sendCloseFrame(self, *args: Any, **kwargs: Any) -> None:
        super().sendCloseFrame(*args, **kwargs)
        self.directSend = None

    def dropConnection(self, abort: bool = False) -> None:
        self.directSend = None
        super().dropConnection(abort)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.directSend = None
        self.factory.partialBytes.release(self)
        for timer in (self._helloTimeout, self._backlogCheck):
            if timer is not None and timer.active():
                timer.cancel()
        self.factory.connectionClosed(self)
        if self.session is not None:
            if self._leaving:
                intentional = True
            elif self.closedByMe:
                intentional = self.localCloseCode in _wire.ENDING_CODES
            else:
                intentional = self.remoteCloseCode in _wire.LEAVING_CODES
            failure = Failure(
                (ConnectionDone if intentional else ConnectionLost)(
                    f"WebSocket closed: code={code} reason={reason!r}"
                )
            )
            self.session.connectionLost(self, failure, intentional)

    # Writing

    def sendPayload(self, payload: bytes) -> None:
        """
        Send one encoded frame, unless the connection is closing: with the
        others of this reactor turn, in the order given (L{WriteCoalescer}).

        Through Autobahn's C{sendMessage} a frame went into the transport's
        buffer and out on the reactor's next turn (asking to watch the
        socket, then a C{send()}, then to stop watching: three system
        calls), and the Python of Autobahn's framing ran for each.
        Gathered, it leaves at the end of this turn, in the page's one
        C{send()}.  No connection here compresses (no C{permessage-deflate}
        is offered), so the frame is the same bytes.
        """
        if self.state == self.STATE_OPEN and not self._cut:
            self.factory.coalescer.add(self, PreparedMessage(
                payload, isBinary=False, applyMask=False, doNotCompress=True).payloadHybi)

    def sendPrepared(self, message: PreparedMessage) -> None:
        """
        Send one frame prepared for many connections: its bytes as they are
        (it is never compressed), with the others of this reactor turn (see
        L{WriteCoalescer}): this is the fan-out's hot path.
        """
        if self.state == self.STATE_OPEN and not self._cut:
            self.factory.coalescer.add(self, message.payloadHybi)

    def writeCoalesced(self, data: bytes) -> None:
        if self.state == self.STATE_OPEN and not self._cut:
            limit = self.factory.settings.maxOutgoingBytes
            left = self._sendNow(data, 4 * limit)
            if left < 0:
                # Past four times the limit nothing waits (L{_checkBacklog}).
                self._cutOff(bufferedBytes(self.transport) + len(data))
            elif left > limit:
                self._checkBacklog()

    def _sendNow(self, data: bytes, cap: int | None = None) -> int:
        """
        L{sendNow} to this connection; then let the next bytes go straight
        to the socket (L{directSend}) only if nothing waits in the
        transport and the connection is open.
        """
        sock, transport = self._socket, cast(Any, self.transport)
        left = sendNow(sock, transport, data, cap)
        if (left == 0 and sock is not None and self.state == self.STATE_OPEN and not self._cut
                and transport.connected and not transport.disconnecting):
            if self.directSend is None:
                self.directSend = sock.send
        else:
            self.directSend = None
        return left

    @withoutDebugFormatting
    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Every other frame (answers, pings, close) after the stream frames
        # gathered before it.
        self.factory.coalescer.flush(self)
        if sync or chopsize or self.send_queue:
            keepSendQueue(self)
            self.directSend = None
            super().sendData(data, sync, chopsize)
        else:
            # Straight to the socket when it can take it, as the frames
            # are: a pong or a ping costs one system call, not three.
            self._sendNow(data)
        # Pongs, close frames and error replies count against the backlog
        # like everything else: a page that pings and never reads is cut.
        self._checkBacklog()

    def sendLiveFrame(self, frame: dict[str, Any]) -> None:
        """
        Send one frame that is not kept for replay (welcome, resumed, ack,
        and errors before a session exists).
        """
        self.sendPayload(_wire.encode(frame))

    def refuse(self, ident: int | None, error: BaseException, quiet: bool = False) -> None:
        """
        Tell a page with no session yet what was wrong, and log it once
        (unless C{quiet}).
        """
        if not quiet:
            self.factory.logThrottle.warn(
                self.liveLog, type(error).__name__, "refused input from {peer}: {kind}: {error}",
                peer=self.peer, kind=type(error).__name__, error=cut(str(error)))
        self.factory.metrics.refused(type(error).__name__)
        self.sendLiveFrame(_wire.errorFrameFor(ident, error))

    def replaced(self) -> None:
        """
        The page has resumed its session on a newer connection: close this one.
        """
        self.session = None
        self.closeWithCode(_wire.CLOSE_REPLACED, "replaced by a newer connection")

    def expel(self, reason: str) -> None:
        """
        The session cannot go on: close with the reason.
        """
        self.closeWithCode(_wire.CLOSE_TOO_FAR_BEHIND, reason)

    def restart(self) -> None:
        """
        The server is stopping and this page is to move: let its element
        tell the page (its C{goingAway} hook, sent on this connection, so
        the page has it before the close), then close with 1012 "service
        restart".  The session waits for the page to resume, as after any
        close the server did not mean to end it.
        """
        if self.session is not None and self.isOpen():
            element = self.session.element
            element._liveRunHook(element.goingAway)
        self.closeWithCode(_wire.CLOSE_SERVICE_RESTART, "server restarting")

    # Opening: the hello is answered by the factory's L{Handshake}, which
    # sees this connection as a L{Greeted}.

    def isOpen(self) -> bool:
        return bool(self.state == self.STATE_OPEN)

    def helloReceived(self) -> None:
        """
        A good C{hello} came: the page no longer has a deadline for it.
        """
        if self._helloTimeout is not None and self._helloTimeout.active():
            self._helloTimeout.cancel()
        # Neither the cancelled timer nor the fired opening is needed again.
        self._helloTimeout = None
        LiveServerProtocol.is_open.letGo(self)

    def closeWithCode(self, code: int, reason: str) -> None:
        """
        Start the closing handshake with C{code}.  Autobahn's C{sendClose}
        accepts only 1000 and 3000-4999 (raising for 1001, 1002 and 1011,
        which are the protocol's own codes), so send the close frame the way
        Autobahn does when it fails a connection itself.
        """
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)


def firstPingDelay(interval: float, draw: Callable[[], float] = random.random) -> float:
    """
    When a page's first heartbeat ping is due: a random moment from half
    the ping interval to all of it after it opened (as L{Backoff} draws
    its delays), so that the pings of pages that opened together are
    spread over half an interval, and stay apart.
    """
    return interval / 2 + draw() * interval / 2


#: What a new connection's slots start as: what the classes it comes from
#: would have read (Twisted's C{transport = None}...), and the runtime's own.
_INITIAL = classDefaults(WebSocketServerProtocol, CONNECTION_ATTRIBUTES) + (
    ("_isOpen", None), ("_isClosed", None), ("_valid_events", EVENTS), ("_results", None),
    ("_transport_details", None),
    ("_options", None), ("session", None), ("gathered", None), ("_helloTimeout", None),
    ("_leaving", False),
    ("_cut", False), ("_backlogCheck", None), ("_floodReported", False), ("adopting", False),
    ("_socket", None), ("directSend", None),
    ("_wireBucket", None), ("_oversize", False),
)
