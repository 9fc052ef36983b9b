"""
L{RedisRoster}: the names held across the processes of a Redis backplane,
in the application's terms (L{chatthing.backplane.Presence}).
"""

import json
import time
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...live import CallRefused, LogThrottle, Stream, cut
from .. import STORE_UNREACHABLE, BackplaneDown, Call, NameTaken, Presence, memberList
from . import rosterlua
from .connection import COMMAND_TIMEOUT, RedisConnection
from .outcomes import ANSWER_MARGIN
from .streams import SharedStream

#: Seconds a login waits for Redis (while the process starts, or Redis is
#: back in a moment) before it is refused.
LOGIN_WAIT = 3.0

#: Seconds after it is sent that a login or a leave is still done by Redis
#: (L{rosterlua.HOLD} and L{rosterlua.RELEASE} check it on Redis's clock):
#: its sender gives up on it after L{COMMAND_TIMEOUT}, so one sent to a
#: paused Redis must not run when Redis wakes, after the page was told it
#: failed (the name would be held by nobody's login, for good).
ROSTER_DEADLINE = COMMAND_TIMEOUT - ANSWER_MARGIN

#: What a page whose login (or change of name) the replicas did not confirm
#: is told (L{RedisRoster.confirm}).
NOT_CONFIRMED = ("The server could not confirm that its store kept your name (it may be "
                 "changing over to a standby); please try again in a moment.")


def methodJSON(method: str) -> str:
    """
    A method name as the Lua scripts take it: JSON, ready to splice into a
    call (see L{rosterlua.HOLD}).
    """
    return json.dumps(method)


def encodeCalls(calls: list[Call]) -> list[str]:
    return [json.dumps([method, list(args)], separators=(",", ":"), ensure_ascii=False)
            for method, args in calls]


def holderId(holder: Any) -> str:
    """
    The id of a holder in Redis: its session's, which stays the same when
    the session moves to another process.
    """
    if holder.sessionId is None:
        raise BackplaneDown("the page is not attached")
    return holder.sessionId


def sharedStream(stream: Stream) -> SharedStream:
    """
    C{stream} as the L{SharedStream} it must be: names are held in Redis
    together with the group's stream there (one script writes both), so a
    L{RedisRoster} takes only the streams its backplane made, and says so
    instead of failing later on a missing C{key}.
    """
    if not isinstance(stream, SharedStream):
        raise TypeError(f"a Redis roster needs a stream of its backplane's, not {stream!r}")
    return stream


class RedisRoster:
    """
    Names held across the cluster, in Redis (see L{rosterlua.HOLD}).  Remembers
    what this process's holders hold, to record it again in a Redis that
    lost it.

    @ivar loginWait: seconds L{hold} waits for Redis before it refuses.
    @ivar unreleased: the holders whose leave Redis did not confirm (past
        its deadline, or unanswered): let go of again by L{resync}.
    @ivar unconfirmed: for each holder whose last L{hold} L{confirm} has
        not been asked about yet, the command connection it went to.
    """

    log = Logger()

    def __init__(self, connection: RedisConnection, presence: Presence = Presence()) -> None:
        self.connection = connection
        self.presence = presence
        self.loginWait = LOGIN_WAIT
        self.held: dict[str, tuple[str, str, SharedStream, list[Call]]] = {}
        self.unreleased: set[str] = set()
        self.unconfirmed: dict[str, Any] = {}
        self._warnings = LogThrottle(time.monotonic)

    def usePresence(self, presence: Presence) -> None:
        self.presence = presence

    def hold(self, holder: Any, name: str, group: str, stream: Stream,
             onLeave: list[Call]) -> Deferred:
        shared = sharedStream(stream)
        try:
            ident = holderId(holder)
        except BackplaneDown as e:
            return fail(e)
        d = self.connection.whenConnected(timeout=self.loginWait)

        def connected(up: bool) -> Deferred:
            if not up:
                raise BackplaneDown("Logins are paused while this server is cut off from the "
                                    "others; try again in a moment.")
            self.unreleased.discard(ident)
            # The connection the script goes to: WAIT must be asked on it.
            commands[0] = self.connection.commands
            return self._hold(ident, name, group, shared, onLeave, resync=False)

        commands: list[Any] = [None]
        d.addCallback(connected)

        def held(result: Any) -> None:
            if result == 0:
                raise NameTaken(f"the name {name!r} is taken")
            self.held[ident] = (name, group, shared, onLeave)
            self.unconfirmed[ident] = commands[0]

        def failed(failure: Failure) -> Failure:
            if failure.check(CallRefused):
                return failure
            # Redis's own words (an error, a timeout) are for the operator.
            self._warnings.warn(self.log, "hold", "could not hold a name in Redis: {error}",
                                error=cut(failure.getErrorMessage()))
            raise BackplaneDown(STORE_UNREACHABLE)

        return d.addCallback(held).addErrback(failed)

    def confirm(self, holder: Any) -> Deferred:
        """
        Fire once C{holder}'s last L{hold}, and whatever this process wrote
        before this call (the session's record, saved as the application
        took the name), would outlive a failover: C{WAIT} for
        C{connection.replicaWait.replicas} replicas (at once with none to
        wait for) on the connection the hold went to.  Fails with
        L{BackplaneDown} (L{NOT_CONFIRMED}) if they did not confirm it in
        time, or if the connection changed since the hold: the new primary
        may not have it, and a C{WAIT} there would confirm nothing of it.
        """
        ident = holder.sessionId
        wrote = self.unconfirmed.pop(ident, None) if ident is not None else None
        wait = self.connection.replicaWait
        if not wait.replicas:
            return succeed(None)
        if wrote is None or wrote is not self.connection.commands:
            self._warnings.warn(self.log, "confirm", "could not confirm a name: the connection "
                                "to Redis changed since it was held")
            return fail(BackplaneDown(NOT_CONFIRMED))

        def refused(failure: Failure) -> None:
            failure.trap(BackplaneDown)
            raise BackplaneDown(NOT_CONFIRMED)

        return wait.confirm(wrote).addErrback(refused)

    def _hold(self, ident: str, name: str, group: str, stream: SharedStream, onLeave: list[Call],
              resync: bool) -> Deferred:
        prefix = self.connection.prefix
        key = self.presence.nameKey(name)
        # A resync's hold has no deadline: no page waits for it.
        deadline = 0 if resync else self.connection.watchdog.redisTime(ROSTER_DEADLINE)
        return self.connection.script(
            rosterlua.HOLD,
            [f"{prefix}names", f"{prefix}holder:{ident}", f"{prefix}group:{group}", stream.key],
            [key, name, ident, group, json.dumps(encodeCalls(onLeave)), "1" if resync else "0",
             self._manyLeft(), prefix, self.connection.proc, deadline],
        )

    def _manyLeft(self) -> str:
        """
        What the reaper publishes for many names leaving at once
        (L{Presence.manyLeft}), as L{rosterlua.HOLD} stores it with each holder:
        C{[method, text, above]} in JSON, or C{""}.
        """
        many = self.presence.manyLeft
        if many is None:
            return ""
        return json.dumps([many[0], many[1], self.presence.manyAbove], ensure_ascii=False)

    def publishChanges(self, group: str, stream: Stream, calls: list[Call],
                       joined: list[str], left: list[str]) -> Deferred | None:
        """
        Publish a batch (see L{rosterlua.CHANGES}); while Redis cannot be reached,
        or if it fails, on this process only (Redis is told of the names
        that left when it is back: L{chatthing.backplane.redis.RedisSessions.resync}).
        """
        shared = sharedStream(stream)
        local = [*calls, (self.presence.changed, [joined, left])]
        if not self.connection.connected:
            shared.fallback.publish(local)
            return succeed(None)
        prefix = self.connection.prefix
        key = self.presence.nameKey
        names = [part for name in joined + left for part in (key(name), name)]
        d = self.connection.script(
            rosterlua.CHANGES, [f"{prefix}group:{group}", shared.key],
            [prefix, group, shared.maxlen, self.connection.nextOrigin(),
             methodJSON(self.presence.changed), self.connection.proc, self.presence.listMax,
             len(calls),
             *encodeCalls(calls), len(joined), *names],
        )

        def failed(failure: Failure) -> None:
            self._warnings.warn(self.log, "changes", "could not publish presence changes in "
                                "Redis ({error}); told this process's pages only",
                                error=cut(failure.getErrorMessage()))
            shared.fallback.publish(local)

        return d.addCallbacks(lambda _: None, failed)

    def restore(self, holder: Any, name: str, group: str, stream: Stream,
                onLeave: list[Call]) -> None:
        """
        C{holder}'s session, which holds C{name}, has moved to this process.
        """
        self.held[holderId(holder)] = (name, group, sharedStream(stream), onLeave)

    def members(self, group: str, stream: Stream) -> Deferred:
        """
        The group's members, once Redis can be reached.
        """
        key = sharedStream(stream).key
        prefix = self.connection.prefix
        d = self.connection.whenConnected()
        d.addCallback(lambda _: self.connection.script(
            rosterlua.MEMBERS, [f"{prefix}group:{group}", key], [prefix, group, self.presence.listMax]))
        return d.addCallback(lambda reply: (reply[1], int(reply[0])) if len(reply) == 2
                             else (memberList(reply[1]), int(reply[0]), int(reply[2])))

    def restoreGroup(self, group: str, names: list[str]) -> None:
        """
        Nothing to do: Redis keeps the group.
        """

    def lookup(self, group: str, name: str) -> Deferred:
        """
        The name C{group} shows under C{name}'s key, or L{None}.
        """
        return self.connection.script(rosterlua.LOOKUP, [f"{self.connection.prefix}group:{group}"],
                                      [self.presence.nameKey(name)]).addCallback(lambda found: found or None)

    def release(self, holder: Any) -> Deferred:
        ident = holder.sessionId
        if ident is None:
            return fail(BackplaneDown("the page was never attached"))
        self.held.pop(ident, None)
        self.unconfirmed.pop(ident, None)
        if not self.connection.connected:
            # Redis is told when it is back (see RedisSessions.resync, for a
            # session that ended, and resync here, for one that lives on:
            # a page whose login was not confirmed).
            self.unreleased.add(ident)
            return fail(BackplaneDown("Redis cannot be reached"))
        d = self._release(ident, self.connection.watchdog.redisTime(ROSTER_DEADLINE))

        def failed(failure: Failure) -> Failure:
            # Refused past its deadline, or unanswered: done again once Redis is back.
            self.unreleased.add(ident)
            return failure

        return d.addErrback(failed)

    def _release(self, ident: str, deadline: int) -> Deferred:
        return self.connection.script(rosterlua.RELEASE, [],
                                      [self.connection.prefix, ident, self.connection.proc, deadline])

    def resync(self) -> Deferred:
        """
        Record again what this process's holders hold, quietly (a Redis
        that restarted lost it); a name someone else took meanwhile is
        logged and kept here.  Let go of the names of holders whose leave
        Redis did not confirm (L{unreleased}).
        """
        def checked(result: Any, ident: str, name: str) -> None:
            if result == 0:
                self.log.warn("after Redis came back, {name} is held by someone else too", name=name)

        def released(result: Any, ident: str) -> None:
            self.unreleased.discard(ident)

        self.unreleased -= set(self.held)
        work = [self._release(ident, 0).addCallback(released, ident) for ident in list(self.unreleased)]
        for ident, (name, group, stream, onLeave) in list(self.held.items()):
            d = self._hold(ident, name, group, stream, onLeave, resync=True)
            work.append(d.addCallback(checked, ident, name))
        return gatherResults(work, consumeErrors=True)
