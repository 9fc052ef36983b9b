"""
L{BulkReader}: the load generator's receiving, one reactor event for every
page socket that has data, instead of one each.

A server that writes each frame to each page as it goes (as chatthing does)
wakes every page's socket once per message.  Twisted then spends, for each
socket and each wake-up, more on its own dispatch (logging context, the
transport's bookkeeping) than the page spends on the frame, and at 50,000
frames a second the load generator, not the server, would be the
bottleneck.  So, as soon as a page is connected, its socket leaves the
reactor's reading set for an epoll set of our own, whose descriptor the
reactor watches instead: when it is readable, L{BulkReader.doRead} reads
every ready socket with one C{recv} each and hands the bytes to its page;
while a scenario sends, it then leaves them for L{SWEEP_INTERVAL}, so that
each read takes several frames.  Only pages that just count are read so:
probes, which time each message, and senders, whose answers pace them, are
read by the reactor as they come.

Probes are read by a reader of their own that reads at once (no sweep
interval) and asks the kernel when each read's bytes arrived
(C{SO_TIMESTAMPNS}), so that a probe's latency ends when the server's frame
reached the load generator, not when the load generator got round to
reading it: L{arrivalTime}.  Read by the reactor, a probe's frame waited
behind whatever else the load generator was doing in that turn (a sweep of
the other pages, the senders' loop), which added the load generator's own
delays to every server's latency alike: at 1,000 pages and 50 messages a
second, 0.4 ms at the median and up to 11 ms at the 99th percentile
(docs/performance.md).

Writing (calls, acks, pongs) still goes through each page's transport.
When a socket is closed, or the page is let go, it goes back to the
reactor, which sees the end of the connection as usual.  Where there is no
epoll (not Linux), pages are read by the reactor as before.
"""

import select
import socket
import struct
import time

from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from .rawclient import RawPage

#: The most bytes read from one socket at once.
READ_SIZE = 65536

#: The most sockets read in one sweep (the others wait for the next).
MAX_EVENTS = 4096

#: Seconds between two sweeps while a scenario sends: frames that arrive
#: meanwhile are read together, with one C{recv} for each socket instead
#: of one for each frame.  A page's count is late by as much (the scenarios
#: read at once while they wait for the last messages), and latency is
#: timed only by probe pages, which the reactor reads as soon as their data
#: comes.
SWEEP_INTERVAL = 0.1

#: Linux's C{SO_TIMESTAMPNS} (Python's socket module does not name it): the
#: kernel stamps each read with the time (C{CLOCK_REALTIME}, in a
#: C{struct timespec}) its bytes arrived.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def available() -> bool:
    return hasattr(select, "epoll")


def arrivalTime(ancillary: list) -> int | None:
    """
    When the bytes of a C{recvmsg} arrived, from its C{ancillary} data, on
    C{time.perf_counter_ns()}'s clock (the one the senders write in their
    messages); L{None} if the kernel did not say.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            # From the wall clock to perf_counter's, at this moment.
            return seconds * 1_000_000_000 + nanoseconds - (time.time_ns() - time.perf_counter_ns())
    return None


@implementer(IReadDescriptor)
class BulkReader:
    """
    Reads the sockets of the pages given to it, in bulk, on C{reactor}, at
    most once every C{interval} seconds (at first, as soon as they have
    data).

    @ivar interval: how long the sockets are left to gather frames between
        two sweeps; C{0} reads them as soon as they have data.
    @ivar stamped: whether each page is told when its bytes arrived (the
        kernel's time, L{arrivalTime}) as it is given them: for probes.
    """

    def __init__(self, reactor, interval: float = 0.0, stamped: bool = False) -> None:
        self.reactor = reactor
        self.interval = interval
        self.stamped = stamped
        self._epoll = select.epoll()
        self._pages: dict[int, tuple[RawPage, socket.socket]] = {}
        self._resuming = None
        self._closed = False
        reactor.addReader(self)

    def __len__(self) -> int:
        return len(self._pages)

    def take(self, page: RawPage) -> None:
        """
        Read C{page}'s socket from now on (it must be open).
        """
        transport = page.transport
        descriptor = transport.fileno()
        transport.stopReading()
        if self.stamped:
            try:
                transport.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                pass  # no stamps: the page times its frames as it reads them
        self._pages[descriptor] = (page, transport.socket)
        self._epoll.register(descriptor, select.EPOLLIN)
        page.whenLost = lambda: self.forget(descriptor, page)

    def forget(self, descriptor: int, page: RawPage) -> None:
        """
        Stop reading C{page}'s socket (which may be closed already: its
        descriptor may even be another socket's by now).
        """
        if self._pages.get(descriptor, (None,))[0] is page:
            del self._pages[descriptor]
            try:
                self._epoll.unregister(descriptor)
            except (OSError, ValueError):
                pass  # closed, and so out of the set already
        page.whenLost = None

    def release(self, descriptor: int) -> None:
        """
        Give the socket back to the reactor.
        """
        page, _ = self._pages[descriptor]
        self.forget(descriptor, page)
        if page.isOpen:
            page.transport.startReading()

    def sweepEvery(self, interval: float) -> None:
        """
        From now on, leave the sockets C{interval} seconds between sweeps
        (while a scenario sends), or read them as soon as they have data
        (C{0}: while pages log in, each waiting for its answers, and while
        the last messages are counted); a sweep due later is made now.
        """
        self.interval = interval
        if self._resuming is not None and self._resuming.active():
            self._resuming.cancel()
            self._resume()

    def close(self) -> None:
        """
        Give every socket back and stop.
        """
        if self._closed:
            return
        if self._resuming is not None and self._resuming.active():
            self._resuming.cancel()
        else:
            self.reactor.removeReader(self)
        for descriptor in list(self._pages):
            self.release(descriptor)
        self._closed = True
        self._epoll.close()

    def _resume(self) -> None:
        self._resuming = None
        if not self._closed:
            self.reactor.addReader(self)

    # IReadDescriptor

    def fileno(self) -> int:
        return -1 if self._closed else self._epoll.fileno()

    def doRead(self) -> None:
        if self._closed:
            return
        pages = self._pages
        for descriptor, _ in self._epoll.poll(0, MAX_EVENTS):
            found = pages.get(descriptor)
            if found is None:
                continue  # let go of during this sweep
            page, sock = found
            arrived = None
            try:
                if self.stamped:
                    data, ancillary, _, _ = sock.recvmsg(READ_SIZE, _STAMP_SPACE)
                    arrived = arrivalTime(ancillary)
                else:
                    data = sock.recv(READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                page.arrived = arrived
                page.dataReceived(data)
                page.arrived = None
            else:
                # The end of the connection: let the reactor find it and
                # tell the page.
                self.release(descriptor)
        if self.interval > 0 and not self._closed:
            self.reactor.removeReader(self)
            self._resuming = self.reactor.callLater(self.interval, self._resume)

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return "BulkReader"
