"""
L{RedisBackplane}: rooms, names and sessions shared by several processes
through one Redis server (C{twistd chat-widget --redis redis://host:port/db}).

It puts together the parts that share one L{RedisConnection}: the streams
(L{SharedStream}, L{SharedPassingStream}), the roster (L{RedisRoster}) and
the session store (L{RedisSessions}); none of them knows the backplane.
What is left here is what concerns them all: catching up after
(re)connecting, the heartbeat that tells live processes from dead ones,
and the hand-off of a session another process adopted.  Until the
connection is up rooms fall back to this process's pages, names cannot be
taken, and C{/healthz} says the backplane is unreachable.
"""

import math
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...live import Stream
from .. import Presence
from . import lua
from .connection import COMMAND_TIMEOUT, RedisConnection
from .protocols import RedisURL
from .replicas import WAIT_SECONDS
from .roster import RedisRoster, methodJSON
from .sessions import RedisSessions
from .streams import SharedPassingStream, SharedStream

#: Seconds between heartbeats; a process whose last heartbeat is older than
#: C{DEAD_AFTER} is taken for dead.
HEARTBEAT_INTERVAL = 1.0
DEAD_AFTER = 3.0

#: Seconds past the grace period that Redis keeps the key naming one
#: publication of a page's call, so that the call, sent again by its page
#: after its process died, is not published twice.  A page sends its calls
#: again when it resumes, within its grace period of the drop (a budget that
#: resumes do not restart: L{chatthing.live.LiveSession}); the margin covers
#: a drop not yet noticed (ping interval and timeout: 25 s by default) and a
#: process not yet taken for dead (L{DEAD_AFTER}).  It was an hour: about
#: 1 GiB of Redis an hour at 1,000 messages a second.
DEDUPE_MARGIN = 60


class _Handoff:
    """
    The process's own channel: the ids of its sessions another process
    adopted, which it lets go of without announcing anything.
    """

    def __init__(self, roster: RedisRoster, sessions: RedisSessions) -> None:
        self.roster = roster
        self.sessions = sessions

    def received(self, message: str) -> None:
        self.roster.held.pop(message, None)
        self.roster.unconfirmed.pop(message, None)
        self.sessions.live.pop(message, None)
        self.sessions.movedAway(message)


class RedisBackplane(MultiService):
    """
    The backplane of one of several processes sharing a chat through Redis.

    @ivar connection: the one link to Redis its parts share.
    """

    log = Logger()

    def __init__(self, url: str, gracePeriod: float, reactor: Any = None,
                 prefix: str = "chatthing:", presence: Presence = Presence(),
                 replicas: int | None = None, replicaWait: float = WAIT_SECONDS,
                 replicaBound: float | None = None) -> None:
        super().__init__()
        self.setName("backplane")
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.gracePeriod = gracePeriod
        self.dedupeSeconds = int(math.ceil(gracePeriod)) + DEDUPE_MARGIN
        self.connection = RedisConnection(RedisURL(url), reactor, prefix, replicas, replicaWait)
        self.connection.setServiceParent(self)
        self.connection.resync = self._resync
        self.connection.interrupted = self._interrupted
        self.replicaBound = replicaBound
        self.roster = RedisRoster(self.connection, presence)
        self.sessions = RedisSessions(self.connection, DEAD_AFTER)
        self.connection.subscribe(f"{prefix}handoff:{self.proc}", _Handoff(self.roster, self.sessions))
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor

    def __repr__(self) -> str:
        return f"<RedisBackplane {self.url.text} as {self.proc}>"

    @property
    def url(self) -> RedisURL:
        return self.connection.url

    @property
    def proc(self) -> str:
        """
        This process's name among the others.
        """
        return self.connection.proc

    @property
    def connected(self) -> bool:
        """
        Whether Redis can be used now.
        """
        return self.connection.connected

    @property
    def deadAfter(self) -> float:
        """
        Seconds without a heartbeat after which a process is taken for dead.
        """
        return self.sessions.deadAfter

    @deadAfter.setter
    def deadAfter(self, seconds: float) -> None:
        self.sessions.deadAfter = seconds

    # What the application asks for

    def stream(self, key: str, name: str, history: int) -> Stream:
        stream = SharedStream(self.connection, f"{self.connection.prefix}stream:{key}", name,
                              history, self.dedupeSeconds, self.replicaBound)
        self.connection.subscribe(stream.key, stream, andThen=stream.catchUp)
        return stream

    def passingStream(self, key: str, name: str) -> Stream:
        stream = SharedPassingStream(self.connection, f"{self.connection.prefix}passing:{key}", name)
        self.connection.subscribe(stream.key, stream)
        return stream

    def problem(self) -> str | None:
        if self.connected:
            return None
        return f"backplane unreachable ({self.url.text})"

    def onStatusChange(self, listener: Callable[[bool], None]) -> None:
        self.connection.onStatusChange(listener)

    def whenConnected(self, timeout: float | None = None) -> Deferred:
        """
        A L{Deferred} firing with C{True} once Redis can be used, or with
        C{False} after C{timeout} seconds (L{RedisConnection.whenConnected}).
        """
        return self.connection.whenConnected(timeout)

    # Catching up

    def _sharedStreams(self) -> list[SharedStream]:
        return [s for s in self.connection.receivers.values() if isinstance(s, SharedStream)]

    def _interrupted(self) -> None:
        for stream in self._sharedStreams():
            stream.interrupted()

    def _resync(self) -> Deferred:
        """
        Catch up with Redis after (re)connecting: heartbeat, make every
        stream's numbering go on after what this process has delivered
        (L{lua.FLOOR}), read what was missed, and record again this
        process's sessions and names (a Redis that restarted empty has
        lost them).

        The numbering goes on right after this process's offset, never
        past a margin: a page that moves to another process resumes from
        the offset it has, and a process that kept no frames of the room
        (nobody there) cannot show it that a jump in the numbering hid
        nothing ("too much of room was missed").  Around a failover no
        margin is needed: with replicas confirming writes a process
        delivers only entries a replica has
        (L{chatthing.backplane.redis.durable.DurablePoint}) and drops
        what it held when the connection goes, so the promoted replica has
        every entry it delivered, and the stream goes on from the same
        numbers for all.  Only a Redis that lost entries (restarted with
        nothing saved, or a replica promoted without the one that
        confirmed them) is behind this process: then the floor keeps its
        numbers from being given again (L{_floored}).
        """
        streams = self._sharedStreams()
        floors = [self.connection.script(lua.FLOOR, [s.key], [s.offset]).addCallback(self._floored, s)
                  for s in streams if s.offset]
        d = gatherResults([self._beatOnce(), *floors], consumeErrors=True)
        d.addCallback(lambda _: self.sessions.resync(self.roster.presence))
        d.addCallback(lambda _: self.roster.resync())
        d.addCallback(lambda _: gatherResults([s.catchUp() for s in streams], consumeErrors=True))
        return d

    def _floored(self, last: Any, stream: SharedStream) -> None:
        """
        C{last}: the offset of C{stream}'s last entry in Redis before its
        floor was set; below this process's, Redis lost entries it had
        delivered: processes started from now on show less, and another
        process that numbered calls there before this one set its floor
        had them taken here for calls already delivered.
        """
        if int(last or 0) < stream.offset:
            self.log.warn("{stream}: Redis had lost its entries after {last} (restarted without "
                          "persistence, or a replica promoted without them?); numbering goes on "
                          "after {offset}", stream=stream, last=last, offset=stream.offset)

    # Heartbeat

    def _beatOnce(self) -> Deferred:
        prefix = self.connection.prefix
        d = self.connection.script(
            lua.HEARTBEAT, [f"{prefix}procs"],
            [prefix, self.proc, int(self.deadAfter * 1000), int(self.gracePeriod * 1000),
             1000, methodJSON(self.roster.presence.left), self.roster.presence.listMax],
        )

        def reaped(ended: Any) -> None:
            if ended:
                self.log.info("ended {count} sessions of processes that died: {ids}",
                              count=len(ended), ids=", ".join(s[:6] for s in ended))

        return d.addCallback(reaped)

    def _beat(self) -> None:
        if not self.connected:
            return
        commands = self.connection.commands
        d = self._beatOnce()
        d.addTimeout(COMMAND_TIMEOUT, self.reactor)

        def failed(failure: Failure) -> None:
            self.log.warn("Redis heartbeat failed: {error}", error=failure.getErrorMessage())
            self.connection.abort(commands)

        d.addErrback(failed)

    # Service

    def startService(self) -> None:
        super().startService()
        self._heartbeat.start(HEARTBEAT_INTERVAL, now=False)

    def stopService(self) -> Deferred:
        if self._heartbeat.running:
            self._heartbeat.stop()
        return super().stopService()
