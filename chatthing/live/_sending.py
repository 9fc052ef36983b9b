"""
Writing frames to page connections: at most one system call per connection
per reactor turn, and none through the reactor when the socket can take the
bytes.

Twisted's C{transport.write} appends to the transport's buffer and asks the
reactor to watch the socket for writability; the next reactor turn sends
the bytes and stops watching: three system calls and a buffer per page.
Sending each frame straight to the socket avoids that but costs one
C{send()} per frame, and a busy room gives each page several frames in one
turn.  So a L{WriteCoalescer} gathers what one turn produces for each
connection, and at the end of the turn L{sendNow} sends each connection's
frames in one C{send()}, handing only what the kernel refused to the
transport.

Only a plain TCP (or UNIX) connection may be written to that way.  Under
TLS the page's transport is a C{TLSMemoryBIOProtocol}, which forwards the
attributes it lacks to the TCP transport beneath it: C{transport.socket} is
the raw socket, and bytes sent there skip the encryption, so the browser
reads plaintext where it expects a TLS record and drops the connection.
L{canSendDirectly} tells the two apart once per connection.
"""

from typing import Any, Callable, Protocol
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.tcp import Connection as _TCPConnection
from twisted.logger import Logger

from ._backlog import bufferedBytes

log = Logger()


def canSendDirectly(transport: Any) -> bool:
    """
    Whether bytes for C{transport} may go straight to its socket: only if it
    is Twisted's own TCP (or UNIX) connection with no TLS on it.  Anything
    else (TLS, a wrapper such as the HAProxy one, a test double) is written
    through C{transport.write}, which may change the bytes on the way.

    It is asked once, when the connection opens, not for every frame: a
    WebSocket connection never starts TLS later.
    """
    return (isinstance(transport, _TCPConnection)
            and not ISSLTransport.providedBy(transport)
            and not getattr(transport, "TLS", False))


def sendNow(sock: Any, transport: Any, data: bytes, cap: int | None = None) -> int:
    """
    Write C{data} to C{transport}: if C{sock} is given and nothing is
    buffered before it (so the order of bytes is kept), straight to that
    socket, else through C{transport.write}.  C{sock} is C{transport}'s own
    socket if it may be sent to directly (L{canSendDirectly}, found once
    per connection), L{None} if not.

    A fan-out calls this once a page and a turn (L{WriteCoalescer}), so a
    connection finds its socket when it opens, and the transport's buffers
    are read here as attributes, not through L{bufferedBytes}: a thousand
    pages a message made the calls and the C{getattr}s with defaults a
    tenth of the flush (py-spy, docs/performance.md).  A direct transport
    is Twisted's TCP connection, which has them all.

    With a C{cap}, bytes that would leave more than C{cap} waiting in the
    transport are not buffered at all (C{-1} is returned: the caller cuts
    the connection), so a page that does not read holds at most C{cap}
    however many frames one turn gathered for it.

    @return: how many bytes the transport holds now, unsent (0 when the
        socket took them all), or C{-1} (see C{cap}).
    """
    if (sock is None or not transport.connected or transport.disconnecting
            or transport._tempDataLen or len(transport.dataBuffer) > transport.offset):
        if cap is not None and bufferedBytes(transport) + len(data) > cap:
            return -1
        transport.write(data)
        return bufferedBytes(transport)
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # A broken connection: let the transport find out and close it.
        transport.write(data)
        return bufferedBytes(transport)
    if sent < len(data):
        if cap is not None and len(data) - sent > cap:
            return -1
        transport.write(data[sent:])
        return len(data) - sent
    return 0


class CoalescedConnection(Protocol):
    #: The frames a L{WriteCoalescer} holds for this connection in this
    #: turn; L{None} when it holds none.  The coalescer keeps them on the
    #: connection itself rather than in a map of its own: a fan-out to a
    #: thousand pages then neither hashes nor looks up a thousand keys.
    #: A single frame is kept as it is, and only a second one makes a
    #: list: a fan-out then allocates nothing a page.
    gathered: list[bytes] | bytes | None

    #: The page this connection speaks for (a key of the L{StreamRun}s'
    #: members), or L{None} before it has one.
    session: Any

    #: Its socket's C{send}, while bytes may go straight to it: the
    #: connection is open, may be sent to directly (L{canSendDirectly}) and
    #: its transport holds nothing that must go first; else L{None}.  Kept
    #: by the connection (cleared whenever it hands bytes to its transport
    #: or starts closing, set again by a write that finds the transport
    #: empty), so that a run's pass over a room costs a page one attribute
    #: and one C{send()} (L{WriteCoalescer._writeRun}).
    directSend: Callable[[bytes], int] | None

    def writeCoalesced(self, data: bytes) -> None:
        """
        Write C{data}, the frames gathered for this connection in one turn.
        """


class RunMember(Protocol):
    """
    A page a stream's frames reach through its connection now (a
    L{StreamRun}'s member).
    """

    connection: Any


class StreamRun:
    """
    The frames one stream emitted in one reactor turn, one after the other
    with nothing else emitted in between, for the pages subscribed to it
    when the first was: gathered once for the room, not once a page.

    Written at the end of the turn, joined once and sent to each page's
    connection in a single pass; so the first page of a room of a thousand
    is sent a message as soon as the turn ends, not after a thousand
    per-page gatherings (the latency scenario's median, docs/performance.md),
    and a page's frames cost one pass, not two.

    @ivar members: the pages it goes to, each with its connection: the
        stream's own table while its pages are the same, a copy of it from
        the moment they change (L{freeze}), so a page subscribed later is
        not sent what was emitted before.  The pass reads the connections
        from it, not from the pages: one object a page, not two.
    @ivar taken: the connections that were given this run's frames one by
        one, with how many: each page that is sent something else in the
        same turn (an answer, a close frame) is given the frames before it
        first, to keep its order (L{WriteCoalescer.add}).
    @ivar pending: whether the run still waits for the end of its turn.
    """

    __slots__ = ("members", "frames", "taken", "pending")

    def __init__(self, members: dict[Any, Any]) -> None:
        self.members = members
        self.frames: list[bytes] = []
        self.taken: dict[Any, int] = {}
        self.pending = True

    def freeze(self, members: dict[Any, Any]) -> None:
        """
        C{members}, the stream's table of pages, is about to change: keep
        the pages it has now.
        """
        if self.pending and self.members is members:
            self.members = dict(members)


class WriteCoalescer:
    """
    Frames for many connections, gathered during one reactor turn and
    written at its end, each connection's in one piece.

    Everything else a connection writes must come after what is gathered
    for it: call L{flush} with it first (the connection does, for every
    frame it writes otherwise, close frames included).

    A stream's frames for all its pages are gathered once, as a
    L{StreamRun} (L{extend}); runs are written first, in the order they
    were emitted, then what was gathered for each connection.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        # The connections given frames this turn, in the order of their
        # first (one may be here twice if it was flushed in between).
        self._waiting: list[CoalescedConnection] = []
        # The streams' runs of this turn, in the order they began.
        self._runs: list[StreamRun] = []
        self._endOfTurn: Any = None

    @classmethod
    def of(cls, reactor: Any) -> "WriteCoalescer":
        """
        The coalescer of C{reactor}'s turns: one for every site on it, so
        that a page's stream frames and its own are written in one order.
        """
        coalescer = _COALESCERS.get(reactor)
        if coalescer is None:
            coalescer = _COALESCERS[reactor] = cls(reactor)
        return coalescer

    def _endTurnLater(self) -> None:
        if self._endOfTurn is None:
            self._endOfTurn = self.reactor.callLater(0, self.flushAll)

    def extend(self, run: StreamRun | None, members: dict[Any, Any], data: bytes) -> StreamRun:
        """
        Write C{data} to every page of C{members} (a stream's) at the end of
        this turn: in C{run}, the stream's last one, if nothing was emitted
        since, else in a new run.

        @return: the run C{data} is in.
        """
        runs = self._runs
        if run is None or not runs or runs[-1] is not run:
            run = StreamRun(members)
            runs.append(run)
            self._endTurnLater()
        run.frames.append(data)
        return run

    def skip(self, page: Any) -> None:
        """
        C{page} is being sent what it missed of its streams (it resumed):
        the runs of this turn are among that, so they must not reach it
        again.
        """
        for run in self._runs:
            connection = run.members.get(page)
            if connection is not None:
                run.taken[connection] = len(run.frames)

    def _takeRuns(self, connection: CoalescedConnection) -> None:
        """
        Gather for C{connection} the frames of this turn's runs its page
        has not been given yet, before whatever it is sent next.
        """
        page = connection.session
        if page is None:
            return
        for run in self._runs:
            if page in run.members:
                given, frames = run.taken.get(connection, 0), run.frames
                if given < len(frames):
                    run.taken[connection] = len(frames)
                    self._gather(connection, _joined(frames[given:]))

    def _gather(self, connection: CoalescedConnection, data: bytes) -> None:
        frames = connection.gathered
        if frames is None:
            connection.gathered = data
            self._waiting.append(connection)
        elif type(frames) is list:
            frames.append(data)
        else:
            connection.gathered = [frames, data]  # type: ignore[list-item]

    def add(self, connection: CoalescedConnection, data: bytes) -> None:
        """
        Write C{data} to C{connection} at the end of this reactor turn.
        """
        if self._runs:
            self._takeRuns(connection)
        if connection.gathered is None:
            self._endTurnLater()
        self._gather(connection, data)

    def flush(self, connection: CoalescedConnection) -> None:
        """
        Write what is gathered for C{connection} now.
        """
        if self._runs:
            self._takeRuns(connection)
        frames = connection.gathered
        if frames is not None:
            connection.gathered = None
            connection.writeCoalesced(_joined(frames))

    def flushAll(self) -> None:
        """
        Write what is gathered for every connection (the turn is over).
        """
        self._endOfTurn = None
        runs, self._runs = self._runs, []
        for run in runs:
            self._writeRun(run)
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            frames = connection.gathered
            if frames is None:
                continue  # flushed already
            connection.gathered = None
            # One connection's failure must not keep the others' frames.
            try:
                connection.writeCoalesced(frames if isinstance(frames, bytes) else b"".join(frames))
            except Exception:
                log.failure("could not write to {connection}", connection=connection)

    def _writeRun(self, run: StreamRun) -> None:
        """
        Send C{run}'s frames to each of its pages: straight away to a page
        with nothing else gathered (the fan-out's hot path: one pass, one
        C{send()} a page), after what is gathered for the others.
        """
        run.pending = False
        frames, taken = run.frames, run.taken
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        size = len(data)
        connection: CoalescedConnection | None
        for connection in tuple(run.members.values()):
            if connection is None:
                continue  # away: it will resume from the stream
            try:
                if taken and connection in taken:
                    given = taken[connection]
                    if given < len(frames):
                        self._gather(connection, _joined(frames[given:]))
                elif connection.gathered is not None:
                    self._gather(connection, data)
                else:
                    send = connection.directSend
                    if send is None:
                        connection.writeCoalesced(data)
                        continue
                    try:
                        sent = send(data)
                    except OSError:
                        sent = 0  # full, or broken: the transport finds out
                    if sent != size:
                        connection.directSend = None
                        connection.writeCoalesced(data[sent:] if sent else data)
            except Exception:
                log.failure("could not write to {connection}", connection=connection)


#: Each reactor's coalescer (L{WriteCoalescer.of}).
_COALESCERS: "WeakKeyDictionary[Any, WriteCoalescer]" = WeakKeyDictionary()


def _joined(frames: list[bytes] | bytes) -> bytes:
    if isinstance(frames, bytes):
        return frames
    return b"".join(frames)
