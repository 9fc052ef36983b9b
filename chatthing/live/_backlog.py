"""
How much a connection's transport holds that its peer has not taken: what
tells a page that does not read from one that is merely busy; and
L{BacklogLimit}, which cuts a page that does not read, whatever the bytes
waiting for it are (answers, stream frames, pongs, close frames).
"""

from typing import TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger

log = Logger()

if TYPE_CHECKING:
    # What the mixin is mixed into, for mypy (see _budget).
    from autobahn.twisted.websocket import WebSocketServerProtocol as _Mixed
else:
    _Mixed = object


def bufferedBytes(transport: Any) -> int:
    """
    Bytes written to C{transport} and not yet taken by the kernel.

    Twisted's TCP transports keep them in C{dataBuffer} (sent up to
    C{offset}: what the kernel refused at the last write attempt) and
    C{_tempDataBuffer} (written since); a transport without them (a test
    double) counts as empty.
    """
    return refusedBytes(transport) + getattr(transport, "_tempDataLen", 0)


def refusedBytes(transport: Any) -> int:
    """
    Bytes the kernel would not take at C{transport}'s last write attempt:
    more than zero only when the peer's receive window and our socket buffer
    are full, i.e. when the peer is not keeping up.
    """
    return len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)


class BacklogLimit(_Mixed):
    """
    Mixed into a page connection: cuts it when its page stops reading.  It
    provides (in its slots) C{_cut} (whether it was cut) and
    C{_backlogCheck} (the timer of a second look, or L{None}), and calls
    L{_checkBacklog} after every write, of whatever kind.
    """

    __slots__ = ()
    _cut: bool
    _backlogCheck: Any
    directSend: Any

    def _checkBacklog(self) -> None:
        """
        Cut the connection if the page is not reading: more than
        C{maxOutgoingBytes} wait for it, and either the kernel has refused
        some of them, or they are still waiting a second later.  A page that
        reads is not cut for one large burst written in a single reactor turn;
        past four times the limit, nothing waits: memory stays bounded.
        """
        limit = self.factory.settings.maxOutgoingBytes
        backlog = bufferedBytes(self.transport)
        if backlog <= limit or self._cut:
            return
        if refusedBytes(self.transport) > 0 or backlog > 4 * limit:
            self._cutOff(backlog)
        elif self._backlogCheck is None:
            self._backlogCheck = self.factory.reactor.callLater(1.0, self._recheckBacklog)

    def _recheckBacklog(self) -> None:
        self._backlogCheck = None
        backlog = bufferedBytes(self.transport)
        if backlog > self.factory.settings.maxOutgoingBytes and not self._cut:
            self._cutOff(backlog)

    def _cutOff(self, backlog: int) -> None:
        self.factory.logThrottle.warn(
            log, "cutOff", "cut off {peer}: it is not reading ({backlog} bytes unsent)",
            peer=self.peer, backlog=backlog,
        )
        self._cut = True
        self.directSend = None
        self.factory.metrics.cutOff()
        # A page connection's transport is a TCP (or TLS over TCP) one,
        # which can be aborted; Twisted's Protocol types it as ITransport.
        cast(ITCPTransport, self.transport).abortConnection()

