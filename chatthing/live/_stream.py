"""
L{Stream}: a broadcast that every subscribed page receives in one order, and
that a page coming back after a drop can replay from where it was.
"""

from collections import deque
from time import perf_counter
from typing import Any, Iterable, Protocol

from autobahn.websocket.protocol import PreparedMessage
from twisted.logger import Logger

from . import _wire
from ._metrics import UNMEASURED, LiveMetrics


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

    @ivar name: identifies the stream in frames; unique among the streams a
        page subscribes to.
    @ivar offset: the offset of the latest call, 0 before the first.
    """

    log = Logger()
    #: The metrics of the site whose sessions subscribe (set as they do).
    metrics: LiveMetrics = UNMEASURED

    def __init__(self, name: str, history: int = 1000) -> None:
        self.name = name
        self.offset = 0
        self._history: deque[PreparedMessage] = deque(maxlen=history)
        self._subscribers: dict[Any, None] = {}

    def __repr__(self) -> str:
        return f"<Stream {self.name!r} at {self.offset}>"

    def subscribe(self, subscriber: StreamSubscriber) -> None:
        self._subscribers[subscriber] = None

    def unsubscribe(self, subscriber: StreamSubscriber) -> None:
        self._subscribers.pop(subscriber, None)

    def subscribers(self) -> list[StreamSubscriber]:
        return list(self._subscribers)

    def emit(self, method: str, *args: Any) -> int:
        """
        Call C{method} with C{args} on every subscriber's widget; nobody
        answers.  Returns the call's offset.
        """
        started = perf_counter()
        self.offset += 1
        message = _prepare(_wire.emitFrame(self.name, self.offset, method, args))
        self._history.append(message)
        for subscriber in list(self._subscribers):
            # One page's broken connection must not keep the call from the
            # pages after it, nor fail the emitter.
            try:
                subscriber.deliverStream(self, self.offset, message)
            except Exception:
                self.log.failure("{stream} could not deliver to {subscriber}",
                                 stream=self, subscriber=subscriber)
        self.metrics.emitted(len(self._subscribers), perf_counter() - started)
        return self.offset

    def since(self, offset: int) -> Iterable[PreparedMessage] | None:
        """
        The frames after C{offset}, oldest first; L{None} if some of them are
        no longer kept (or C{offset} is in the future), so the gap cannot be
        filled.
        """
        missed = self.offset - offset
        if missed < 0 or missed > len(self._history):
            return None
        if missed == 0:
            return []
        return list(self._history)[-missed:]


def _prepare(frame: dict[str, Any]) -> PreparedMessage:
    return PreparedMessage(_wire.encode(frame), isBinary=False, applyMask=False, doNotCompress=True)
