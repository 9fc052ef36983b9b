"""
L{Settlements}: what a sender is told of its call when replicas confirm
writes (C{--redis-replicas N} above 0): sent once the stream's durable
point (L{chatthing.backplane.redis.durable}) covers it, or refused once it
is void -- decided by Redis, in one step, so never both.

Until the point covers a call, its process asks the replicas again, across
reconnections to a new primary: there it first asks what that primary
holds (L{durablelua.SETTLE}): a call it does not hold was never durable
(Sentinel promotes the most advanced replica) and is refused; one it
holds is waited for there.  After L{BOUND} seconds, L{durablelua.SETTLE}
settles it for good: sent if the point covers it by then, else deleted
(C{"void SEQ"}: readers drop it) and refused.  Only a sender voids, and
only its own calls; presence batches and the reaper's entries are never
voided: they wait for the next point.
"""

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...live import LogThrottle, cut
from .. import BackplaneDown
from . import durablelua
from .outcomes import ANSWER_LOST

#: Seconds a sender's call may wait for the replicas before it is settled
#: once and for all (L{durablelua.SETTLE}): more than a failover takes.
BOUND = 10.0

#: How many of a stream's last entries a publication whose answer was lost
#: is looked for among (L{durablelua.SETTLE} without numbers).
_SCAN = 2_000


class Point(Protocol):
    """
    What L{Settlements} asks of a L{chatthing.backplane.redis.durable.DurablePoint}.
    """

    stream: Any
    connection: Any
    point: int
    generation: int
    durableKey: str

    def confirm(self) -> None: ...


class _Waiter:
    """
    A sender's publication waiting to be settled: numbered C{first} to
    C{last} by the primary of the connection C{generation} (C{first} 0:
    not known, its entries are looked for by its origin).
    """

    def __init__(self, origin: str, first: int, last: int, generation: int) -> None:
        self.origin = origin
        self.first = first
        self.last = last
        self.generation = generation
        self.outcome: Deferred = Deferred()
        self.timer: Any = None


class Settlements:
    """
    One stream's publications from this process waiting for its durable point.

    @ivar told: called with the origin of each publication refused.
    """

    log = Logger()

    def __init__(self, point: Point, told: Callable[[str], None], bound: float = BOUND) -> None:
        self.durable = point
        self.told = told
        self.bound = bound
        self.connection = point.connection
        self._waiters: list[_Waiter] = []
        self._warnings = LogThrottle(self.connection.reactor.seconds)

    def settle(self, answer: Any, origin: str) -> Deferred:
        """
        Once Redis answered the publication C{origin} (its numbers, or
        L{ANSWER_LOST}), a L{Deferred} firing once it is durable, or
        failing with L{BackplaneDown} once it is void.
        """
        durable = self.durable
        if answer is None:
            return succeed(None)  # published before, by a process that died
        if answer == ANSWER_LOST:
            waiter = _Waiter(origin, 0, 0, -1)
        else:
            seqs = [int(seq) for seq in answer]
            if not seqs or max(seqs) <= durable.point:
                return succeed(None)
            waiter = _Waiter(origin, min(seqs), max(seqs), durable.generation)
        self._waiters.append(waiter)
        waiter.timer = self.connection.reactor.callLater(self.bound, self._expire, waiter)
        if waiter.generation == durable.generation:
            durable.confirm()
        elif self.connection.connected:
            self._check(waiter)
        return waiter.outcome

    def waiting(self, confirmed: int) -> bool:
        """
        Whether a publication of this connection waits for the replicas to
        confirm the stream past C{confirmed}.
        """
        generation = self.durable.generation
        return any(w.generation == generation and w.last > confirmed for w in self._waiters)

    def covered(self, point: int | None = None) -> None:
        """
        The point moved (or the replicas confirmed the stream up to
        C{point}): the publications it covers are sent.
        """
        durable = self.durable
        point = durable.point if point is None else max(point, durable.point)
        for waiter in list(self._waiters):
            if waiter.generation == durable.generation and 0 < waiter.last <= point:
                self._settled(waiter, None)

    def reconnected(self) -> None:
        """
        Connected again (to a new primary, maybe): ask it what became of
        the publications made on an earlier connection.
        """
        for waiter in list(self._waiters):
            if waiter.generation != self.durable.generation:
                self._check(waiter)

    def _check(self, waiter: _Waiter) -> None:
        generation = self.durable.generation

        def checked(reply: list) -> None:
            state, last = reply[0], int(reply[1])
            if state == "held" and generation == self.durable.generation:
                waiter.first, waiter.last, waiter.generation = 0, last, generation
                self.covered()
                self.durable.confirm()
            elif state in ("durable", "gone"):
                self._decided(waiter, state)

        self._settle(waiter, "check").addCallbacks(checked, lambda failure: None)

    def _expire(self, waiter: _Waiter, again: bool = True) -> None:
        """
        C{waiter} waited L{bound} seconds: sent if durable now, else void.
        """
        waiter.timer = None
        if waiter.outcome.called:
            return
        d = self.connection.whenConnected(self.bound)
        d.addCallback(lambda up: self._settle(waiter, "void") if up
                      else fail(BackplaneDown("Redis cannot be reached")))
        d.addCallback(lambda reply: self._decided(waiter, reply[0]))

        def failed(failure: Failure) -> None:
            if again:
                self._expire(waiter, again=False)
            else:
                self.log.error("{stream}: could not settle {origin} ({error}); refused, yet it may be "
                               "delivered", stream=self.durable.stream, origin=waiter.origin,
                               error=cut(failure.getErrorMessage()))
                self._decided(waiter, "void")

        d.addErrback(failed)

    def _settle(self, waiter: _Waiter, mode: str) -> Deferred:
        if waiter.generation != self.durable.generation or not waiter.first:
            first, last = 0, 0  # numbers of another primary, maybe: look for the origin
        else:
            first, last = waiter.first, waiter.last
        return self.connection.script(durablelua.SETTLE, [self.durable.stream.key, self.durable.durableKey],
                                      [first, last, waiter.origin, mode, _SCAN])

    def _decided(self, waiter: _Waiter, state: str) -> None:
        if state == "durable":
            self._settled(waiter, None)
        else:
            self._settled(waiter, BackplaneDown(
                f"it could not be confirmed as saved (the {self.connection.replicaWait.replicas} "
                f"Redis replica(s) needed did not have it within {self.bound:g} s); please send it again"))

    def _settled(self, waiter: _Waiter, error: BackplaneDown | None) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        if waiter.outcome.called:
            return
        if error is None:
            waiter.outcome.callback(None)
        else:
            self.told(waiter.origin)
            self._warnings.warn(self.log, "void", "{stream}: {origin} refused: {error}",
                                stream=self.durable.stream, origin=waiter.origin, error=str(error))
            waiter.outcome.errback(error)
