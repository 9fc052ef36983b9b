"""
What a page's incoming WebSocket frames may cost: a rate for frames of
every kind, and a bound on the bytes held for messages not yet finished.

Autobahn parses every frame a page sends, answers every ping with a pong,
and keeps every fragment of a message until its last one arrives (up to
its C{maxMessagePayloadSize}).  Left alone that lets one page make the
server spend without limit: a ping flood is answered for ever, and a
thousand connections each holding an unfinished message of a megabyte
hold a gigabyte.  L{BudgetedFrames} hooks into Autobahn's frame and
message assembly where those costs are spent:

- every frame, control frames and continuations included, takes a token
  of a generous per-connection L{TokenBucket} (L{wireBucket}: many times
  what an honest page sends); a page past it is flooding and is closed with
  1008 (policy violation), and nothing more it sends is read;
- a message's fragments together are held up to C{maxFrameBytes}; past
  that the rest of the message is read and dropped (the page gets a
  C{FrameTooLarge} error at its end, as for one large frame);
- what all connections hold together in unfinished messages is kept in a
  L{PartialBytes} ledger; past its limit, the connection holding the most
  is closed with 1009 (message too big: from its side, its message was too
  big for what the server could hold then) and its bytes let go;
- a message declared over the hard limit (C{maxMessagePayloadSize}) is
  closed with 1009 as Autobahn would, but logged through the throttle and
  counted;
- a pong that answers none of the server's pings is ignored quietly
  (Autobahn logs a line for each).
"""

from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable

from autobahn.util import encode_truncate
from twisted.logger import Logger

from . import _wire
from ._errors import RateLimited
from ._footprint import dropFrameMasker
from ._ratelimit import TokenBucket

log = Logger()

if TYPE_CHECKING:
    # What the mixin is mixed into, for mypy: Autobahn's frame hooks
    # and state are then known, and super() reaches them.  At run time
    # the mixin is a plain class (see LiveServerProtocol's bases).
    from autobahn.twisted.websocket import WebSocketServerProtocol as _Mixed
else:
    _Mixed = object

#: How many times an honest page's most (its frame and ack rates and
#: bursts together) a page may send, counting frames of every kind, before
#: it is taken for a flood and closed.
FLOOD_FACTOR = 10

#: Control frames (pings, pongs, close) an honest page sends, a second and
#: at once, besides its messages.
CONTROL_RATE = 5
CONTROL_BURST = 10

#: WebSocket close codes for a page past its budget (RFC 6455, 7.4.1).
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009


def wireBucket(settings: Any, clock: Callable[[], float]) -> TokenBucket:
    """
    The bucket that every frame of one connection takes a token from:
    L{FLOOD_FACTOR} times the frame and ack rates (and bursts) of
    C{settings}, plus the control frames.
    """
    rate, burst = _wireLimits(settings.frameRate, settings.ackRate, settings.frameBurst, settings.ackBurst)
    return TokenBucket(rate, burst, clock)


@lru_cache(maxsize=8)
def _wireLimits(frameRate: float, ackRate: float, frameBurst: int, ackBurst: int) -> tuple[float, int]:
    # Worked out once: every connection's bucket then shares the two
    # numbers instead of holding two of its own (above 256, an int is an
    # object of 28 bytes).
    return (FLOOD_FACTOR * (frameRate + ackRate) + CONTROL_RATE,
            FLOOD_FACTOR * (frameBurst + ackBurst) + CONTROL_BURST)


class PartialBytes:
    """
    The bytes every connection holds in messages it has begun and not
    finished, and which connection holds the most.

    @ivar limit: bytes all connections may hold together.
    @ivar total: bytes they hold now.
    @ivar peak: the most they held at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.peak = 0
        self._held: dict[Any, int] = {}

    def add(self, connection: Any, count: int) -> Any:
        """
        C{connection} holds C{count} bytes more; the connection to close to
        keep under the limit (the one holding the most), or L{None}.
        """
        self._held[connection] = self._held.get(connection, 0) + count
        self.total += count
        self.peak = max(self.peak, self.total)
        if self.total <= self.limit:
            return None
        return max(self._held, key=self._held.__getitem__)

    def release(self, connection: Any) -> None:
        """
        C{connection} holds nothing any more (its message ended, or it did).
        """
        self.total -= self._held.pop(connection, 0)

    def heldBy(self, connection: Any) -> int:
        return self._held.get(connection, 0)


class BudgetedFrames(_Mixed):
    """
    Mixed into a C{WebSocketServerProtocol} before it: the budgets above,
    on Autobahn's frame and message hooks, and what the connection does
    when a page goes over one.

    The connection provides, in its slots, C{_wireBucket} (a
    L{TokenBucket}, or L{None} before it opens), C{_ackBucket}, C{_oversize}
    (whether the message being read has gone past C{maxFrameBytes}),
    C{_floodReported} and C{_cut}; and C{_throttle()} (take a token of its
    frame rate, or raise L{RateLimited}), C{session} and C{refuse}.
    """

    __slots__ = ()
    _wireBucket: TokenBucket | None
    _ackBucket: TokenBucket
    _oversize: bool
    _floodReported: bool
    _cut: bool
    session: Any

    if TYPE_CHECKING:
        # Provided by the connection (LiveServerProtocol).
        def _throttle(self) -> None: ...

        def refuse(self, ident: int | None, error: BaseException, quiet: bool = False) -> None: ...

    # Every frame

    def onFrameBegin(self) -> None:
        bucket = self._wireBucket
        if bucket is not None and not self.failedByMe and not bucket.take():
            self.closeForBudget(
                CLOSE_POLICY_VIOLATION, "FrameFlood",
                f"too many frames: over {bucket.rate:g} a second (bursts of {bucket.burst})")
        if self.current_frame.opcode < 8 and not self.inside_message:
            # A message begins: it is lent a UTF-8 validator till it ends.
            self.factory.validators.lend(self)
        super().onFrameBegin()

    def onFrameEnd(self) -> bool | None:
        result = super().onFrameEnd()
        dropFrameMasker(self)
        return result

    def processControlFrame(self) -> bool:
        frame = self.current_frame
        if frame.opcode == 10 and self.autoPingPending is not None:
            payload = b"".join(self.control_frame_data)
            if payload != self.autoPingPending:
                # A pong answering none of our pings (RFC 6455 allows them):
                # nothing to do, and no log line per frame.  (Autobahn
                # empties it as [] when the next frame begins.)
                self.control_frame_data = []
                return True
        return super().processControlFrame()

    # Unfinished messages

    def onMessageFrameData(self, payload: bytes) -> None:
        if self.failedByMe or self._oversize:
            return
        ledger = self.factory.partialBytes
        if ledger.heldBy(self) + len(payload) > self.factory.settings.maxFrameBytes:
            # Read the rest of this message, but keep none of it.
            self._oversize = True
            self._letGoOfMessage()
            return
        victim = ledger.add(self, len(payload))
        super().onMessageFrameData(payload)
        if victim is not None:
            victim.closeForBudget(
                CLOSE_MESSAGE_TOO_BIG, "PartialBudget",
                "the server holds too many unfinished messages; yours is the largest")

    def _max_message_size_exceeded(self, msg_size: int, max_msg_size: int, reason: str) -> None:
        # A message declared over the hard limit: Autobahn would fail the
        # connection with 1009 and a log line of its own each time.
        self.closeForBudget(CLOSE_MESSAGE_TOO_BIG, "MessageTooBig",
                            f"message of {msg_size} bytes over the limit of {max_msg_size}")

    def onMessageEnd(self) -> None:
        factory = self.factory
        factory.partialBytes.release(self)
        factory.validators.takeBack(self)
        if self._oversize:
            self._oversize = False
            # Let go of what was kept (Autobahn would set None, against its
            # own list[bytes] annotation; it starts each message with []).
            self.message_data = []
            if not self.failedByMe:
                self.messageTooLarge(self.message_data_total_length)
            return
        # What Autobahn's onMessageEnd does, but for firing its txaio
        # "message" event, which nothing here listens to (a Deferred and a
        # gather per message for nothing).
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        # Let go of the message as Autobahn does (it starts the next with []).
        self.message_data = None  # type: ignore[assignment]

    def _letGoOfMessage(self) -> None:
        self.factory.partialBytes.release(self)
        if self.frame_data is not None:
            self.frame_data = []
        if self.message_data is not None:
            self.message_data = []

    def closeForBudget(self, code: int, kind: str, reason: str) -> None:
        """
        Close the connection with C{code}: it is over the budget C{kind}.
        What it holds is let go at once and nothing more it sends is kept;
        Autobahn drops the connection if the page does not answer the close
        within its close handshake timeout.  A flood is not even read any
        more (its close reply neither: it is dropped after that timeout);
        a page closed for a message too big is read, and kept nothing of,
        until it answers, so that it sees a clean close.
        """
        if self.failedByMe or self.state != self.STATE_OPEN:
            return
        self.failedByMe = True
        self._letGoOfMessage()
        self.overBudget(code, kind, reason)
        self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)
        if code == CLOSE_POLICY_VIOLATION:
            # Twisted types a protocol's transport as an ITransport, which
            # does not pause; TCP and TLS transports do (IPushProducer), a
            # test double may not.
            pause = getattr(self.transport, "pauseProducing", None)
            if pause is not None:
                pause()

    # What a connection does about it

    def _ackRefused(self) -> None:
        """
        An ack over its rate is dropped unanswered (an error reply is a
        numbered frame, which a page acks: a flood would feed itself), and
        counted; logged once a flood.
        """
        self.factory.metrics.refused("AckRateLimited")
        if not self._floodReported:
            self._floodReported = True
            bucket = self._ackBucket
            self.factory.logThrottle.warn(
                log, "AckRateLimited",
                "dropping acks from {peer}: over {rate:g} a second (bursts of {burst})",
                peer=self.peer, rate=bucket.rate, burst=bucket.burst)

    def messageTooLarge(self, length: int) -> None:
        """
        A message over C{maxFrameBytes} was read and dropped (see
        L{BudgetedFrames}): refuse it as one frame too large.
        """
        if self._cut:
            return
        error: Exception = _wire.FrameTooLarge(
            f"frame of {length} bytes exceeds the limit of {self.factory.settings.maxFrameBytes} bytes")
        try:
            self._throttle()
        except RateLimited as limited:
            error = limited
        quiet = isinstance(error, RateLimited) and self._floodReported
        self._floodReported = self._floodReported or isinstance(error, RateLimited)
        (self if self.session is None else self.session).refuse(None, error, quiet=quiet)

    def overBudget(self, code: int, kind: str, reason: str) -> None:
        """
        Log (rate limited) and count a close for going over a budget.
        """
        self.factory.logThrottle.warn(
            log, kind, "closing {peer} with {code}: {reason}",
            peer=self.peer, code=code, reason=reason)
        self.factory.metrics.closedForBudget(kind)
