"""
Streams shared by several processes through Redis: L{SharedStream} (a
room's log, numbered by Redis) and L{SharedPassingStream} (typing).
"""

import json
from collections import OrderedDict
from typing import Any, Iterable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...live import LogThrottle, PassingStream, Stream, runningCall
from .. import BackplaneDown
from . import lua
from .connection import RedisConnection
from .durable import DurablePoint
from .outcomes import PUBLISH_DEADLINE, Outcomes

#: How many (call, stream) pairs remember how often the call published on
#: the stream, to name each publication of a call uniquely.
_RECENT_CALLS = 1000

#: Seconds a page waits for the first read of its room (L{SharedStream.ready}).
FIRST_READ_WAIT = 3.0

#: What the sender of a call that was not published is told (the page shows
#: it after "Not sent: ").
NOT_SENT = ("this server cannot reach the others right now; "
            "send it again in a moment")


class SharedStream(Stream):
    """
    A stream whose calls every process subscribed to it delivers, in the
    order Redis numbered them.

    L{publish} appends calls to the Redis stream (and publishes them on its
    channel) in one script; every process, this one included, delivers them
    when they come back on the channel, in offset order, reading any it
    missed from the Redis stream first.  While Redis cannot be reached, or
    when it does not take them within L{PUBLISH_DEADLINE}, calls are
    refused (L{BackplaneDown}): a call is delivered by every process in
    the one order, or by none, and its sender is told so.  Only notices of
    this process about itself go on the L{fallback}, a passing stream: they
    carry no offset, so no numbering of this process alone is left for a
    page that moves to another to reconcile.

    With replicas confirming writes, its L{durable} point holds what it
    hears until the replicas have it, and settles its senders' calls
    (L{chatthing.backplane.redis.durable}): a call is delivered or refused,
    never both.
    """

    log = Logger()
    #: Never L{None} here: a shared stream always has one.
    fallback: Stream

    def __init__(self, connection: RedisConnection, key: str, name: str, history: int,
                 dedupeSeconds: int, durableBound: float | None = None) -> None:
        super().__init__(name, history)
        self.connection = connection
        self.key = key
        self.dedupeSeconds = dedupeSeconds
        self.maxlen = history
        self.fallback = PassingStream(f"{name}.here")
        self.fallback.observe(self._tellObservers)
        self._refusals = LogThrottle(connection.reactor.seconds)
        self.outcomes = Outcomes(connection, self)
        self.loaded = False
        self._catchingUp = False
        self._generation = 0
        self._waiting: list[Deferred] = []
        self._early: dict[int, tuple[str, str]] = {}
        self._published: OrderedDict[str, int] = OrderedDict()
        self.durable: DurablePoint | None = None
        if connection.replicaWait.replicas:
            self.durable = DurablePoint(self, connection, self.outcomes.told,
                                        *([] if durableBound is None else [durableBound]))
            self.outcomes.settlesLost = True

    def ready(self) -> Deferred:
        """Once the room was read from Redis, or L{FIRST_READ_WAIT} if it is
        not there yet (welcomed before the read, a page got no history)."""
        if self.loaded:
            return succeed(self)
        d: Deferred = Deferred()
        self._waiting.append(d)
        if not self.connection.connected:
            d.addTimeout(FIRST_READ_WAIT, self.connection.reactor,
                         onTimeoutCancel=lambda _, __: self._unwaited(d))
        return d

    def _unwaited(self, d: Deferred) -> "SharedStream":
        self._waiting.remove(d)
        return self

    def emit(self, method: str, *args: Any) -> None:
        self.publish([(method, list(args))]).addErrback(lambda failure: None)
        return None

    def publish(self, calls: Iterable[tuple[str, list]]) -> Deferred:
        """
        Publish C{calls} on every process, in one order; the L{Deferred}
        fails with L{BackplaneDown} if they were not (and will not be).
        With C{connection.replicaWait.replicas} above 0 it fires only once
        that many Redis replicas have them too, so that a failover cannot
        lose what a sender was told was sent, and fails once they are void
        (L{DurablePoint.settle}).
        """
        calls = [(method, list(args)) for method, args in calls]
        if not self.connection.connected:
            return self._notPublished(Failure(BackplaneDown("Redis cannot be reached")), calls)
        origin = self.connection.nextOrigin()
        encoded = [json.dumps([method, args], separators=(",", ":"), ensure_ascii=False)
                   for method, args in calls]
        deadline = self.connection.watchdog.redisTime(PUBLISH_DEADLINE)
        answer = self.connection.script(lua.PUBLISH, [self.key, self._dedupeKey()],
                                        [self.maxlen, origin, self.dedupeSeconds, deadline, *encoded])
        d = self.outcomes.awaitAnswer(answer, origin)
        if self.durable is not None:
            # Its own refusal, which says why: Redis has the calls already.
            return d.addCallbacks(self.durable.settle, self._notPublished,
                                  callbackArgs=(origin,), errbackArgs=(calls,))
        d.addCallback(lambda _: None)
        return d.addErrback(self._notPublished, calls)

    def _dedupeKey(self) -> str:
        """
        A name for this publication, the same if the page's call that
        makes it runs again on another process (after this one died before
        it could answer), so that Redis publishes it once.
        """
        call = runningCall.get()
        if call is None:
            return ""
        mark = f"{call}:{self.key}"
        count = self._published.get(mark, 0)
        self._published[mark] = count + 1
        self._published.move_to_end(mark)
        while len(self._published) > _RECENT_CALLS:
            self._published.popitem(last=False)
        return f"{self.connection.prefix}dedupe:{mark}:{count}"

    def _notPublished(self, failure: Failure, calls: list) -> Deferred:
        """
        Redis did not take C{calls}, and will not (past their deadline it
        refuses them): their sender is told.
        """
        self._refusals.warn(self.log, "refused", "{stream}: {count} calls not published: {error}",
                            stream=self, count=len(calls), error=failure.getErrorMessage())
        return fail(BackplaneDown(NOT_SENT))

    # Receiving

    def received(self, message: str) -> None:
        """
        A call came on the stream's channel: C{"SEQ ORIGIN CALL"} (or, with
        a durable point, what L{DurablePoint.received} takes).
        """
        if self.durable is not None:
            self.durable.received(message)
            return
        seq, origin, call = message.split(" ", 2)
        self.arrived(int(seq), origin, call)

    def arrived(self, seq: int, origin: str, call: str) -> None:
        """
        The call numbered C{seq}, published as C{origin}, came.
        """
        if self._catchingUp or not self.loaded or seq > self.offset + 1:
            self._early[seq] = (origin, call)
            if self.loaded and not self._catchingUp:
                self.catchUp()
            return
        self._accept(seq, origin, call)

    def _accept(self, seq: int, origin: str, call: str) -> None:
        if seq <= self.offset:
            return
        self.outcomes.seen(origin)
        if not call:
            # A floor marker: numbered, not for the pages.
            self.skipTo(seq)
            return
        try:
            method, args = json.loads(call)
        except (ValueError, TypeError):
            self.log.error("{stream}: skipping a malformed entry {seq}: {call!r}",
                           stream=self, seq=seq, call=call[:200])
            self.skipTo(seq)
            return
        self.deliver(seq, method, args)

    def catchUp(self) -> Deferred:
        """
        Read from the Redis stream what came after this process's offset
        (the last C{history} calls, the first time), deliver it, then what
        came on the channel meanwhile.
        """
        if self._catchingUp:
            return succeed(None)
        self._catchingUp = True
        generation = self._generation
        if self.durable is not None:
            d = self.durable.read(self.offset, self.maxlen, self.loaded)
        elif self.loaded:
            d = self.connection.call("XRANGE", self.key, f"(0-{self.offset}", "+")
        else:
            d = self.connection.call("XREVRANGE", self.key, "+", "-", "COUNT", self.maxlen)
            d.addCallback(lambda entries: list(reversed(entries or [])))
        d.addCallback(self._caughtUp, generation, self.outcomes.catchUpStarted())
        d.addErrback(self._notCaughtUp, generation)
        return d

    def _caughtUp(self, entries: list, generation: int, started: int) -> None:
        if generation != self._generation:
            return
        if entries and not self.loaded:
            # What came before the first entry read is not kept here.
            self.skipTo(int(entries[0][0].split("-")[1]) - 1)
        for ident, fields in entries or []:
            values = dict(zip(fields[::2], fields[1::2])) if isinstance(fields, list) else fields
            self._accept(int(ident.split("-")[1]), values.get("o", ""), values.get("c", ""))
        if self.durable is not None:
            # What is not in Redis up to the point was voided or trimmed.
            self.skipTo(self.durable.readPoint)
        self._catchingUp = False
        self.loaded = True
        early, self._early = self._early, {}
        for seq in sorted(early):
            if seq > self.offset + 1:
                # Still a gap: the calls between were trimmed from Redis.
                self.log.warn("{stream}: calls {first} to {last} are no longer in Redis",
                              stream=self, first=self.offset + 1, last=seq - 1)
            self._accept(seq, *early[seq])
        self.outcomes.caughtUp(started)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self)
        if self.durable is not None:
            self.durable.caughtUp()

    def _notCaughtUp(self, failure: Failure, generation: int) -> None:
        if generation != self._generation:
            return
        self._catchingUp = False
        self.log.warn("{stream}: could not read from Redis: {error}", stream=self,
                      error=failure.getErrorMessage())
        # Pages waiting for the stream are served what this process has.
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self)

    def interrupted(self) -> None:
        """
        The connection to Redis was lost: a catch-up under way will not
        finish; the next one starts from this process's offset.
        """
        if self.durable is not None:
            self.durable.interrupted()
        if self._catchingUp:
            self._catchingUp = False
            self._generation += 1

    def close(self) -> None:
        self.connection.unsubscribe(self.key)
        if self.durable is not None:
            self.durable.close()


class SharedPassingStream(PassingStream):
    """
    Passing events published to every process through Redis pub/sub (not
    kept in Redis); on this process only while Redis cannot be reached.
    """

    def __init__(self, connection: RedisConnection, key: str, name: str) -> None:
        super().__init__(name)
        self.connection = connection
        self.key = key

    def emit(self, method: str, *args: Any) -> None:
        arguments = list(args)
        if not self.connection.connected:
            return self.deliver(0, method, arguments)
        d = self.connection.call("PUBLISH", self.key, json.dumps([method, arguments], ensure_ascii=False))
        d.addErrback(lambda failure: self.deliver(0, method, arguments))

    def received(self, message: str) -> None:
        try:
            method, args = json.loads(message)
        except (ValueError, TypeError):
            return
        self.deliver(0, method, args)

    def close(self) -> None:
        self.connection.unsubscribe(self.key)
