"""
L{ReplicaWait}: a write is confirmed only once C{replicas} Redis replicas
have it (C{WAIT}), so that a failover, which promotes one of them, cannot
lose what a sender was told was sent.

Redis replicates asynchronously: a primary that dies a moment after a
write may take it along, and the replica promoted in its place never had
it.  C{WAIT numreplicas timeout} answers once that many replicas have
acknowledged every write the same connection made before it, or after
C{timeout} milliseconds with how many did.  One C{WAIT} confirms every
write before it, and it holds up the connection's later commands until it
answers: so the writes of one reactor turn share one C{WAIT}, and there is
never more than one C{WAIT} in flight per connection (the writes made
meanwhile wait for the next one) -- with no replica answering, the
connection is held up for one timeout at a time, not one per write.
"""

import time
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...live import LogThrottle, cut
from .. import BackplaneDown

#: Seconds a C{WAIT} gives the replicas to confirm a write, by default.
WAIT_SECONDS = 0.5

#: Seconds past the C{WAIT}'s own timeout before its answer is taken for lost.
_MARGIN = 2.0


class _Batches:
    """
    The C{WAIT}s of one command connection: the writes waiting for the
    next one, and whether one is in flight.
    """

    def __init__(self, owner: "ReplicaWait", protocol: Any) -> None:
        self.owner = owner
        self.protocol = protocol
        self.waiting: list[Deferred] = []
        self.busy = False
        self.scheduled: Any = None

    def add(self) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append(d)
        if not self.busy and self.scheduled is None:
            # At the end of this turn: the writes of this turn, already
            # sent, share the WAIT.
            self.scheduled = self.owner.reactor.callLater(0, self.send)
        return d

    def send(self) -> None:
        self.scheduled = None
        batch, self.waiting = self.waiting, []
        if not batch:
            return
        self.busy = True
        owner = self.owner
        d = self.protocol.execute_command("WAIT", owner.replicas, owner.milliseconds)
        d.addTimeout(owner.milliseconds / 1000 + _MARGIN, owner.reactor)
        d.addBoth(self.answered, batch)

    def answered(self, result: Any, batch: list[Deferred]) -> None:
        self.busy = False
        owner = self.owner
        if isinstance(result, Failure):
            error = BackplaneDown("it could not be confirmed as saved (the connection to Redis "
                                  f"failed: {cut(result.getErrorMessage(), 100)}); please send it again")
        elif int(result) < owner.replicas:
            error = BackplaneDown(f"it could not be confirmed as saved ({int(result)} of the "
                                  f"{owner.replicas} Redis replica(s) needed had it within "
                                  f"{owner.milliseconds} ms); please send it again")
        else:
            error = None
        if error is None:
            owner.confirmed += len(batch)
        else:
            owner.refused += len(batch)
            owner.warnings.warn(owner.log, "wait", "{count} write(s) not confirmed: {error}",
                                count=len(batch), error=cut(str(error)))
        for d in batch:
            if error is None:
                d.callback(None)
            else:
                d.errback(error)
        if self.waiting:
            self.send()


class ReplicaWait:
    """
    Confirms the writes made on a connection once C{replicas} replicas
    have them (L{confirm}).

    @ivar confirmed: how many writes were confirmed.
    @ivar refused: how many were not (too few replicas in time).
    """

    log = Logger()

    def __init__(self, reactor: Any, replicas: int, milliseconds: int = round(WAIT_SECONDS * 1000)) -> None:
        self.reactor = reactor
        self.replicas = replicas
        self.milliseconds = milliseconds
        self.confirmed = 0
        self.refused = 0
        self.warnings = LogThrottle(time.monotonic)
        self._current: _Batches | None = None

    def confirm(self, protocol: Any) -> Deferred:
        """
        A L{Deferred} firing once C{replicas} replicas have every write
        sent on the command connection C{protocol} so far, or failing
        with L{BackplaneDown}.  It must be the connection the write went
        to: a C{WAIT} on another one, which wrote nothing, would answer at
        once.
        """
        if protocol is None:
            return fail(BackplaneDown("Redis cannot be reached"))
        if self._current is None or self._current.protocol is not protocol:
            # A new connection; a WAIT still due on the old one fails by itself.
            self._current = _Batches(self, protocol)
        return self._current.add()
