"""
L{DurablePoint}: with replicas confirming writes (C{--redis-replicas N}
above 0), a stream's entries are delivered only once they are durable,
and a sender is told its call was sent, or refused, as Redis decided.

Why: a call is appended and published at once, and only then do the
replicas get it.  Delivered at once, a call that no replica confirmed
(none there, a lagging one, a primary that died) was shown on every page
while its sender was told it was not sent -- and, sent again, seen twice.
So each process holds the entries it hears (a bounded buffer) until the
stream's I{durable point} covers them.  The point is ranged: replication
is one ordered stream, so a C{WAIT} that confirms a write (L{durablelua.MARK})
confirms every entry the stream had before it, whoever wrote it; then
L{durablelua.DURABLE} moves the point, stored in Redis, and says
C{"durable SEQ"} on the stream's channel.

A process asks (one round at a time, one C{WAIT} in flight per
connection: L{chatthing.backplane.redis.replicas.ReplicaWait}) while its
own entries or calls wait, and for entries of others held longer than
L{FALLBACK} (their writer may have died).  What its senders are told is
L{chatthing.backplane.redis.settling}'s.
"""

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...live import LogThrottle
from . import durablelua
from .opening import firstRead
from .settling import BOUND, Settlements

#: Seconds an entry another process wrote may be held before this process
#: asks the replicas itself (its writer may have died before it did).
FALLBACK = 0.5

#: Seconds between two rounds after one failed at once.
_RETRY = 0.1

#: How many entries a process holds for one stream at most; past that it
#: drops them and reads what is durable from Redis (a catch-up) instead.
MAX_HELD = 10_000


class Gated(Protocol):
    """
    What L{DurablePoint} asks of its stream
    (L{chatthing.backplane.redis.streams.SharedStream}).
    """

    key: str
    offset: int
    loaded: bool

    def arrived(self, seq: int, origin: str, call: str) -> Any: ...

    def catchUp(self) -> Deferred: ...

    def skipTo(self, offset: int) -> None: ...


class DurablePoint:
    """
    One shared stream's durable point, and the entries it holds until the
    point covers them.

    @ivar senders: this process's publications waiting for the point.

    @ivar point: the durable point known here.
    @ivar generation: how many times the connection to Redis was lost: a
        publication of an earlier connection is settled by what the new
        primary holds, not by the point.
    """

    log = Logger()

    def __init__(self, stream: Gated, connection: Any, told: Callable[[str], None],
                 bound: float = BOUND) -> None:
        self.stream = stream
        self.connection = connection
        self.point = 0
        self.generation = 0
        self.held: dict[int, tuple[str, str]] = {}
        self.voided: set[int] = set()
        self._running = False
        self._fallback: Any = None
        self._last = 0
        self._confirmedSeq = 0
        #: Whether Redis holds an older point than the one known here.
        self._behind = False
        #: The point the last catch-up read up to: what it did not read up
        #: to there is not in Redis (voided, or trimmed).
        self.readPoint = 0
        self._warnings = LogThrottle(connection.reactor.seconds)
        self.durableKey = f"{connection.prefix}durable"
        self.senders = Settlements(self, told, bound)
        connection.onStatusChange(self._status)

    # Readers

    def received(self, message: str) -> None:
        """
        C{message} came on the stream's channel: an entry, a new durable
        point or a voided entry.
        """
        first, rest = message.split(" ", 1)
        if first == "durable":
            self.advance(int(rest))
        elif first == "void":
            seq = int(rest)
            self.held.pop(seq, None)
            if seq > self.stream.offset:
                self.voided.add(seq)
        else:
            origin, call = rest.split(" ", 1)
            self.hold(int(first), origin, call)

    def hold(self, seq: int, origin: str, call: str) -> None:
        """
        Deliver the entry C{seq} once the durable point covers it.
        """
        if seq <= self.point:
            self.stream.arrived(seq, origin, call)
            return
        if len(self.held) >= MAX_HELD:
            self._warnings.warn(self.log, "held", "{stream}: more than {count} entries waiting for "
                                "the replicas; read from Redis once durable instead",
                                stream=self.stream, count=MAX_HELD)
            self.held.clear()
        self.held[seq] = (origin, call)
        self._last = max(self._last, seq)
        if origin.startswith(self.connection.proc + "/"):
            self.confirm()
        elif self._fallback is None:
            self._fallback = self.connection.reactor.callLater(FALLBACK, self._late)

    def _late(self) -> None:
        self._fallback = None
        if self.held:
            self.confirm()
            self._fallback = self.connection.reactor.callLater(FALLBACK, self._late)

    def advance(self, point: int) -> None:
        """
        The durable point is C{point} (or further already): deliver what it
        covers, and settle the publications it covers.
        """
        if point <= self.point:
            return
        self.point = point
        for seq in sorted(seq for seq in self.held if seq <= point):
            self._skipVoided(seq - 1)
            self.stream.arrived(seq, *self.held.pop(seq))
        self._skipVoided(point)
        self.caughtUp()
        self.senders.covered()

    def _skipVoided(self, upTo: int) -> None:
        stream = self.stream
        while stream.offset < upTo and stream.offset + 1 in self.voided:
            self.voided.discard(stream.offset + 1)
            stream.skipTo(stream.offset + 1)
        self.voided = {seq for seq in self.voided if seq > stream.offset}

    def caughtUp(self) -> None:
        """
        Read from Redis what the point covers and this process has not
        delivered (entries it never heard, or dropped).
        """
        if self.stream.loaded and self.stream.offset < self.point:
            self.stream.catchUp()

    def read(self, offset: int, count: int, loaded: bool) -> Deferred:
        """
        A catch-up's read (L{durablelua.READ}): the entries up to the point
        (the first time, once what is past it is confirmed: L{firstRead}).
        """
        d = self.connection.script(durablelua.READ, [self.stream.key, self.durableKey],
                                   [offset, count, "1" if loaded else "0"])
        if not loaded:
            d.addCallback(lambda reply: firstRead(self.connection, self.stream.key, self.durableKey,
                                                  reply, offset, count))
        return d.addCallback(self._read)

    def _read(self, reply: list) -> list:
        point, last, entries = int(reply[0]), int(reply[1]), reply[2]
        self.readPoint = point
        # After a failover, if the primary died before its replica had the
        # last point stored (L{opening}): a round here stores it again.
        self._behind = point < self.point
        self.point = max(self.point, point)
        # What is held up to the point is among the entries read.
        self.held = {seq: entry for seq, entry in self.held.items() if seq > self.point}
        self._last = max(self._last, last)
        self.confirm()
        return entries

    def interrupted(self) -> None:
        """
        The connection was lost: what was held may never reach the next
        primary; what it holds is read from it once durable there.
        """
        self.generation += 1
        self._last = 0
        self._confirmedSeq = 0
        self._behind = False
        self.held.clear()
        self.voided.clear()

    def close(self) -> None:
        """
        The stream is closed: nothing more is held or asked for.
        """
        self.held.clear()
        self._last = 0
        self.connection.removeStatusListener(self._status)
        if self._fallback is not None and self._fallback.active():
            self._fallback.cancel()
        self._fallback = None

    # Confirming

    def confirm(self) -> None:
        """
        Ask the replicas to confirm the stream up to its last entry, and
        move the durable point there.  One round (a mark and its C{WAIT})
        at a time; the next may start while the last one's point is being
        stored; rounds go on while this process's own entries or calls are
        not confirmed.
        """
        commands = self.connection.commands
        if (self._running or not self.connection.connected or commands is None
                or not (self._behind or self._last > self.confirmedTo
                        or self.senders.waiting(self.confirmedTo))):
            return  # the round under way goes on, or again once connected (_status)
        self._running = True
        generation = self.generation
        mark = self.connection.script(durablelua.MARK, [self.stream.key, f"{self.durableKey}:marks"], [])
        d = gatherResults([mark, self.connection.replicaWait.confirm(commands)], consumeErrors=True)
        d.addCallbacks(self._answered, self._notConfirmed, callbackArgs=(commands, generation))

    @property
    def confirmedTo(self) -> int:
        """
        How far the replicas confirmed the stream, as far as this process knows.
        """
        return max(self.point, self._confirmedSeq)

    def _answered(self, results: list, commands: Any, generation: int) -> None:
        self._running = False
        if self.connection.commands is not commands or generation != self.generation:
            # The WAIT confirmed the old primary's replicas only.
            self._notConfirmed(None)
            return
        seq = int(results[0])
        self._confirmedSeq = max(self._confirmedSeq, seq)
        self._behind = False  # stored now (or Redis lost entries: nothing to store)
        # The replicas have it: its senders are told now, the pages once the
        # point is stored (only this process would void these, and it won't).
        self.senders.covered(seq)
        d = self.connection.script(durablelua.DURABLE, [self.stream.key, self.durableKey], [seq])

        def notStored(failure: Failure) -> None:
            # Stored by a later round (on this primary, or on the promoted
            # replica, which has what was confirmed).
            self._confirmedSeq = self.point
            self._warnings.warn(self.log, "durable", "{stream}: could not store the durable point: {error}",
                                stream=self.stream, error=failure.getErrorMessage())

        d.addCallbacks(lambda point: self.advance(int(point)), notStored)
        if self._pending():
            self.confirm()

    def _notConfirmed(self, failure: Failure | None) -> None:
        self._running = False
        if self._pending():
            self.connection.reactor.callLater(_RETRY, self.confirm)

    def _pending(self) -> bool:
        """
        Whether this process has entries or calls the replicas have not
        confirmed, or a point to store again.
        """
        mine = self.connection.proc + "/"
        confirmed = self.confirmedTo
        return self._behind or self.senders.waiting(confirmed) or any(
            seq > confirmed and origin.startswith(mine) for seq, (origin, _) in self.held.items())

    def _status(self, connected: bool) -> None:
        if connected:
            self.senders.reconnected()
            self.confirm()

    def settle(self, answer: Any, origin: str) -> Deferred:
        """
        Once Redis answered the publication C{origin}: L{Settlements.settle}.
        """
        return self.senders.settle(answer, origin)
