"""
Opening a stream whose durable point in Redis is behind its entries: what
its first catch-up reads (L{firstRead}).

A page that moves here from a dead process may have been shown entries
past the point Redis holds: if the primary died before its replica had
the last point stored (L{durablelua.DURABLE} comes after the C{WAIT}),
and the page's process with it, nobody is left who knew the newer point
and would store it again (L{chatthing.backplane.redis.durable.DurablePoint}
does once it reconnects).  A stream ready short of the page's offset could
not resume it ("too much of room was missed").  So a process opening a
stream confirms first what Redis has past the point, as any process may
(one round: a mark, its C{WAIT}, the point stored), then reads again.
"""

from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed

from . import durablelua


def firstRead(connection: Any, key: str, durableKey: str, reply: list, offset: int,
              count: int) -> Deferred:
    """
    C{reply}, what L{durablelua.READ} gave the first time, or, if Redis has
    entries past its point, what it gives once they are confirmed.  Not
    confirmed (no replica in time, the connection lost): C{reply}.
    """
    commands = connection.commands
    if int(reply[1]) <= int(reply[0]) or commands is None:
        return succeed(reply)
    mark = connection.script(durablelua.MARK, [key, f"{durableKey}:marks"], [])
    d = gatherResults([mark, connection.replicaWait.confirm(commands)], consumeErrors=True)

    def confirmed(results: list) -> Any:
        if connection.commands is not commands:
            return reply  # the WAIT confirmed the old primary's replicas only
        stored = connection.script(durablelua.DURABLE, [key, durableKey], [int(results[0])])
        return stored.addCallback(lambda _: connection.script(durablelua.READ, [key, durableKey],
                                                              [offset, count, "0"]))

    return d.addCallback(confirmed).addErrback(lambda failure: reply)
