"""
L{Stream}: a broadcast that every subscribed page receives in one order, and
that a page coming back after a drop can replay from where it was.
L{PassingStream}: one that is not replayed.
"""

from contextvars import ContextVar
from time import perf_counter
from typing import Any, Callable, Iterable, Protocol

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from . import _wire
from ._boundedlog import BoundedLog
from ._metrics import UNMEASURED, LiveMetrics
from ._sending import RunMember, StreamRun, WriteCoalescer

#: While a page's call runs: C{"SESSION:SEQ"}, naming that call for as long
#: as the page may send it again.  A stream shared between processes uses it
#: to publish what a call emits once, even if the call runs again elsewhere
#: after its process died (see L{chatthing.backplane}).
runningCall: ContextVar[str | None] = ContextVar("runningCall", default=None)

#: Something told of every call a stream delivers, in order, before the
#: pages are: C{observer(method, args)}.
StreamObserver = Callable[[str, list], None]


class StreamSubscriber(Protocol):
    def deliverStream(self, stream: "Stream", offset: int, message: PreparedMessage) -> None:
        ...


class Stream:
    """
    An ordered log of remote calls to every subscriber's widget.

    Each call is numbered with the stream's next I{offset} and encoded once,
    into one WebSocket frame that every subscriber is sent as it is (no
    per-recipient JSON or numbering), which keeps fan-out cheap.  The last
    C{history} frames are kept, so a page that reconnects saying "I have
    everything up to offset N" can be sent what it missed, in order.
    They are kept within a byte budget too (L{limitBytes}), counted in
    bytes of their encoded frames, and a stream nobody will resume from
    drops them (L{trim}).

    A stream shared by several processes (L{chatthing.backplane}) numbers
    its calls in the shared log and delivers them here with L{deliver} as
    they come back, in order; offsets may then skip numbers.

    @ivar name: identifies the stream in frames; unique among the streams a
        page subscribes to.
    @ivar offset: the offset of the latest call, 0 before the first.
    @ivar heldBytes: the bytes of the frames kept for replay.
    @ivar fallback: a stream of this process only that pages subscribed to
        this one also receive, and that carries what this one cannot while
        it is cut off from the processes it is shared with; L{None} for a
        stream of one process.
    """

    log = Logger()
    #: The metrics of the site whose sessions subscribe (set as they do).
    metrics: LiveMetrics = UNMEASURED
    fallback: "Stream | None" = None

    def __init__(self, name: str, history: int = 1000) -> None:
        self.name = name
        self.offset = 0
        self._history: BoundedLog[tuple[int, PreparedMessage]] = BoundedLog(_frameBytes, history)
        # Frames up to this offset may be forgotten: no page further
        # behind can be caught up.
        self._complete = 0
        # Subscribers told with L{StreamSubscriber.deliverStream}, and pages
        # sent the frames through a coalescer's runs (L{subscribePage}),
        # each with its connection now.
        self._subscribers: dict[Any, None] = {}
        self._pages: dict[Any, Any] = {}
        self._coalescer: WriteCoalescer | None = None
        # This turn's run of frames for the pages, while it may grow.
        self._run: StreamRun | None = None
        self._observers: list[StreamObserver] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} at {self.offset}>"

    @property
    def heldBytes(self) -> int:
        return self._history.heldBytes

    @property
    def maxBytes(self) -> int | None:
        """
        The most bytes of frames kept for replay (L{None}: only C{history}
        bounds them); see L{limitBytes}.
        """
        return self._history.maxBytes

    def subscribe(self, subscriber: StreamSubscriber) -> None:
        """
        Call C{subscriber}'s C{deliverStream} with every frame from now on,
        as it is emitted.
        """
        self._subscribers[subscriber] = None

    def subscribePage(self, page: RunMember, coalescer: WriteCoalescer) -> None:
        """
        Send every frame from now on to C{page}'s connection, gathered by
        C{coalescer} with the frames of the room's other pages (the
        fan-out's hot path: see L{StreamRun}).
        """
        self._endRun()
        self._coalescer = coalescer
        self._pages[page] = page.connection

    def pageMoved(self, page: RunMember, connection: Any) -> None:
        """
        C{page}'s connection is C{connection} now (L{None}: it is away).
        """
        if page in self._pages:
            self._pages[page] = connection

    def unsubscribe(self, subscriber: Any) -> None:
        if subscriber in self._pages:
            self._endRun()
            del self._pages[subscriber]
        self._subscribers.pop(subscriber, None)

    def subscribers(self) -> list[Any]:
        return [*self._pages, *self._subscribers]

    @property
    def subscriberCount(self) -> int:
        return len(self._pages) + len(self._subscribers)

    def _endRun(self) -> None:
        """
        The pages are about to change: what was emitted before goes to the
        pages there were, and what comes next to the new ones.
        """
        run = self._run
        if run is not None:
            self._run = None
            run.freeze(self._pages)

    def observe(self, observer: StreamObserver) -> None:
        """
        Tell C{observer} of every call delivered from now on (for views kept
        from a stream, such as a room's history).
        """
        self._observers.append(observer)

    def ready(self) -> Deferred:
        """
        Fires once the stream knows its offset and history (at once, here;
        a shared stream first reads them from the shared log).
        """
        return succeed(self)

    def emit(self, method: str, *args: Any) -> int | None:
        """
        Call C{method} with C{args} on every subscriber's widget; nobody
        answers.  Returns the call's offset (L{None} from a shared stream,
        where the shared log numbers it later).
        """
        self.deliver(self.offset + 1, method, list(args))
        return self.offset

    def publish(self, calls: Iterable[tuple[str, list]]) -> Deferred | None:
        """
        Emit each of C{calls}, C{(method, args)}, one after the other, with
        nothing between them.  A shared stream numbers them together, and
        returns a L{Deferred} that fires (with L{None}) once the shared log
        has them, or fails if they were refused (and will not be delivered).
        """
        for method, args in calls:
            self.emit(method, *args)
        return None

    def close(self) -> None:
        """
        Nothing will be emitted or subscribed any more (a shared stream
        stops listening to the others).
        """

    def deliver(self, offset: int, method: str, args: list) -> None:
        """
        Send every subscriber the call numbered C{offset}, which must be
        after L{offset}.
        """
        started = perf_counter()
        message = self.prepare(offset, method, args)
        self.offset = offset
        forgotten = self._history.append((offset, message))
        if forgotten is not None:  # L{_forgot}, inline: every call emitted passes here
            self._complete = forgotten[0]
        self._tellObservers(method, args)
        self.fanOut(offset, message)
        self.metrics.emitted(self.subscriberCount, perf_counter() - started)

    def _forgot(self, newest: tuple[int, PreparedMessage] | None) -> None:
        """
        The frames up to C{newest} were forgotten (if it is not L{None}).
        """
        if newest is not None:
            self._complete = newest[0]

    def limitBytes(self, maxBytes: int) -> None:
        """
        Keep at most C{maxBytes} of frames for replay (and as many in the
        L{fallback}): past that the oldest are forgotten, and a page that
        missed them cannot resume.
        """
        self._history.maxBytes = maxBytes
        self.trimBytes(maxBytes)
        if self.fallback is not None:
            self.fallback.limitBytes(maxBytes)

    def trimBytes(self, maxBytes: int) -> int:
        """
        Forget the oldest frames until at most C{maxBytes} are kept.

        @return: how many bytes were let go.
        """
        before = self.heldBytes
        self._forgot(self._history.trim(maxBytes))
        return before - self.heldBytes

    def trim(self) -> int:
        """
        Forget every frame kept for replay (and the L{fallback}'s): nobody
        is left to resume from them.  What comes next is numbered and kept
        as before.

        @return: how many bytes were let go.
        """
        freed = self.trimBytes(0)
        if self.fallback is not None:
            freed += self.fallback.trim()
        return freed

    def skipTo(self, offset: int) -> None:
        """
        Number the next call after C{offset} (used where the log has entries
        that carry no call for pages).
        """
        if offset > self.offset:
            self.offset = offset
            if not self._history:
                self._complete = offset

    def prepare(self, offset: int, method: str, args: list) -> PreparedMessage:
        return _prepare(_wire.emitFrame(self.name, offset, method, args))

    def fanOut(self, offset: int, message: PreparedMessage) -> None:
        if self._pages:
            coalescer: Any = self._coalescer
            self._run = coalescer.extend(self._run, self._pages, message.payloadHybi)
        if not self._subscribers:
            return
        for subscriber in list(self._subscribers):
            # One page's broken connection must not keep the call from the
            # pages after it, nor fail the emitter.
            try:
                subscriber.deliverStream(self, offset, message)
            except Exception:
                self.log.failure("{stream} could not deliver to {subscriber}",
                                 stream=self, subscriber=subscriber)

    def _tellObservers(self, method: str, args: list) -> None:
        for observer in self._observers:
            try:
                observer(method, args)
            except Exception:
                self.log.failure("{stream}: observer {observer!r} raised",
                                 stream=self, observer=observer)

    def since(self, offset: int) -> Iterable[PreparedMessage] | None:
        """
        The frames after C{offset}, oldest first; L{None} if some of them are
        no longer kept (or C{offset} is in the future), so the gap cannot be
        filled.
        """
        if offset > self.offset or offset < self._complete:
            return None
        return [message for (at, message) in self._history if at > offset]

    # Carried across a restart (L{chatthing.live._statefile})

    def savedState(self) -> dict[str, Any]:
        """
        What L{restoreState} needs to carry this stream on in the process
        that replaces this one: its offset, and the frames it keeps for
        replay (as their JSON text), so that a page that resumes there is
        sent exactly what it missed.
        """
        return {"offset": self.offset, "complete": self._complete,
                "frames": [[at, _payloadOf(message)] for at, message in self._history]}

    def restoreState(self, state: dict[str, Any]) -> None:
        """
        Take up where a stream saved with L{savedState} was (this one must
        be new: nothing emitted yet).

        @raise ValueError: if C{state} is not what L{savedState} gives.
        """
        offset, complete, frames = state.get("offset"), state.get("complete"), state.get("frames")
        if (type(offset) is not int or type(complete) is not int or not isinstance(frames, list)
                or not 0 <= complete <= offset
                or not all(isinstance(f, list) and len(f) == 2 and type(f[0]) is int
                           and complete < f[0] <= offset and isinstance(f[1], str) for f in frames)):
            raise ValueError(f"the saved state of stream {self.name!r} is not one a stream saves")
        if self.offset or self._history:
            raise ValueError(f"stream {self.name!r} has emitted already")
        self.offset, self._complete = offset, complete
        # Within this stream's bounds, which may be smaller than the saved
        # one's.
        for at, text in frames:
            self._forgot(self._history.append(
                (at, PreparedMessage(text.encode("utf-8"), isBinary=False, applyMask=False,
                                     doNotCompress=True))))


class PassingStream(Stream):
    """
    A stream of passing events (who is typing now): its frames carry no
    offset, a page that comes back after a drop is not sent the ones it
    missed, which would be stale, and they take no room in a history.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name, history=1)

    def deliver(self, offset: int, method: str, args: list) -> None:
        started = perf_counter()
        self.offset = offset
        self._tellObservers(method, args)
        self.fanOut(offset, _prepare(_wire.passingFrame(self.name, method, args)))
        self.metrics.emitted(self.subscriberCount, perf_counter() - started)

    def since(self, offset: int) -> list:
        return []


def _frameBytes(entry: tuple[int, PreparedMessage]) -> int:
    """
    What a frame kept for replay holds: the bytes of its encoded frame.
    """
    return len(entry[1].payloadHybi)


def _prepare(frame: dict[str, Any]) -> PreparedMessage:
    return PreparedMessage(_wire.encode(frame), isBinary=False, applyMask=False, doNotCompress=True)


def _payloadOf(message: PreparedMessage) -> str:
    """
    The text of a prepared (unmasked, uncompressed) text frame: its bytes
    after the WebSocket header.
    """
    raw = message.payloadHybi
    start = 2 + {126: 2, 127: 8}.get(raw[1] & 0x7F, 0)
    return raw[start:].decode("utf-8")
