"""
L{HungRedisWatchdog}: how a L{chatthing.backplane.redis.RedisConnection}
finds out that Redis stopped answering while its connections stay open
(a Redis paused by SIGSTOP, a stalled VM), and keeps the offset of
Redis's clock for the deadlines of its scripts.
"""

import time
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

#: Seconds between the watchdog's looks at the command connection: while
#: it waits for no answer, it asks Redis the time (L{HungRedisWatchdog}).
WATCH_INTERVAL = 0.25

#: Seconds without any answer from Redis, while one is awaited, after which
#: it is taken for hung: not I{connected} until it answers again.  A paused
#: Redis (SIGSTOP, a stalled VM) keeps its TCP connections open: nothing but
#: silence tells.  Under load answers keep coming, however late each is, so
#: a busy Redis is not taken for a hung one.
HUNG_AFTER = 1.0

#: Seconds a hung Redis keeps its command connection before it is dropped
#: (and made again): a network that dropped it without a word.  Until then
#: the commands sent before it hung are answered on it when it wakes up, so
#: their senders learn what became of them (see L{lua.PUBLISH}'s deadline).
ABORT_AFTER = 10.0


class Watched(Protocol):
    """
    What a L{HungRedisWatchdog} watches and tells: a
    L{chatthing.backplane.redis.RedisConnection}.
    """

    url: Any

    @property
    def commands(self) -> Any:
        """
        The command connection in use (a txredisapi protocol), or L{None}.
        """

    def hung(self, commands: Any) -> None:
        """
        Redis stopped answering on C{commands}.
        """

    def answering(self, commands: Any) -> None:
        """
        Redis answers again on C{commands}, after it L{hung}.
        """

    def abort(self, commands: Any = None) -> None:
        """
        Drop C{commands}, for it to be made again.
        """


class HungRedisWatchdog(Service):
    """
    Finds a Redis that stopped answering on a connection that is still
    open (paused, not dead) within about L{HUNG_AFTER} seconds, and tells
    its L{RedisConnection} (L{RedisConnection.hung}): no longer
    I{connected}, its pages are told, and its parts refuse what needs Redis
    instead of waiting seconds for it.  The connection is kept: when Redis
    wakes up, it answers the commands sent before, in order, and the
    connection catches up (L{RedisConnection.answering}); after
    L{ABORT_AFTER} seconds of silence it is dropped.  While nothing else is
    awaited the watchdog asks Redis C{TIME}, which also keeps
    L{clockOffset}, for L{redisTime}.

    It looks at the answers the command connection awaits (txredisapi's
    C{replyQueue.waiting}, oldest first, one per command sent): the same
    oldest one awaited for longer than L{HUNG_AFTER} means no answer at all
    came meanwhile.  A command that timed out on our side is still awaited
    there, as it is by the socket.

    @ivar hung: how many times it took Redis for hung.
    @ivar clockOffset: milliseconds Redis's clock is ahead of this
        process's (L{None} until measured).
    """

    log = Logger()

    def __init__(self, connection: Watched, reactor: Any,
                 hungAfter: float = HUNG_AFTER) -> None:
        self.connection = connection
        self.reactor = reactor
        self.hungAfter = hungAfter
        self.hung = 0
        self.clockOffset: float | None = None
        self._oldest: Any = None
        self._oldestSince = 0.0
        self._hungOn: Any = None
        self._confirming = False
        self._probed: Any = None
        self._loop = LoopingCall(self._look)
        self._loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        self._loop.start(WATCH_INTERVAL, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def redisTime(self, inSeconds: float) -> int:
        """
        The time C{inSeconds} from now on Redis's clock, in ms (0 if it was
        never measured: no deadline), for a script to check with C{TIME}.
        """
        if self.clockOffset is None:
            return 0
        return int(time.time() * 1000 + self.clockOffset + inSeconds * 1000)

    def _look(self) -> None:
        commands = self.connection.commands
        if commands is None:
            self._hungOn = self._oldest = None
            return
        waiting = commands.replyQueue.waiting
        now = self.reactor.seconds()
        moved = not waiting or waiting[0] is not self._oldest
        if self._hungOn is commands:
            if moved:
                self.log.info("Redis at {url} answers again", url=self.connection.url.text)
                self._hungOn = self._oldest = None
                self.connection.answering(commands)
            elif now - self._oldestSince > ABORT_AFTER:
                self._hungOn = self._oldest = None
                self.connection.abort(commands)
            return
        if not waiting:
            self._oldest = None
        elif moved:
            self._oldest, self._oldestSince = waiting[0], now
        elif now - self._oldestSince > self.hungAfter and not self._confirming:
            # After a stall of this process, timers run before the answers
            # that came meanwhile are read: look again once they are.
            self._confirming = True
            self.reactor.callLater(0, self._confirm, commands, waiting[0])
            return
        if self._probed is not commands:
            self.measure(commands)

    def _confirm(self, commands: Any, oldest: Any) -> None:
        self._confirming = False
        waiting = commands.replyQueue.waiting
        if commands is not self.connection.commands or not waiting or waiting[0] is not oldest:
            return
        self.hung += 1
        self._hungOn = commands
        self.log.error("Redis at {url} has not answered for {seconds:.1f} s",
                       url=self.connection.url.text, seconds=self.reactor.seconds() - self._oldestSince)
        self.connection.hung(commands)

    def measure(self, commands: Any) -> Deferred:
        """
        Ask Redis C{TIME} on C{commands} (one at a time): an answer to
        await, and the offset of its clock.  Fires once answered (or not).
        """
        self._probed = commands
        sent = time.time()

        def measured(reply: Any) -> None:
            received = time.time()
            seconds, micros = (int(part) for part in reply)
            self.clockOffset = seconds * 1000 + micros / 1000 - (sent + received) * 500

        def done(_: Any) -> None:
            if self._probed is commands:
                self._probed = None

        try:
            d = commands.execute_command("TIME")
        except Exception:  # noqa: BLE001 (txredisapi raises when not connected)
            self._probed = None
            return succeed(None)
        d.addCallback(measured)
        d.addErrback(lambda failure: None)
        return d.addBoth(done)


#: Seconds between a L{SubscriberWatch}'s heartbeats.
BEAT_INTERVAL = 1.0

#: Seconds within which the subscriber must hear a heartbeat once Redis has
#: answered its C{PUBLISH}: more than L{HUNG_AFTER}, since a subscriber
#: behind a backlog of messages is slow, not dead.
HEAR_WITHIN = 2.0


class Beating(Protocol):
    """
    What a L{SubscriberWatch} uses: a L{chatthing.backplane.redis.RedisConnection}.
    """

    url: Any
    prefix: str
    proc: str
    connected: bool

    def subscribe(self, channel: str, receiver: Any) -> None:
        """
        Give C{receiver} what comes on C{channel}, on every connection.
        """

    def call(self, *command: Any) -> Deferred:
        """
        Send one command on the command connection.
        """

    def reconnect(self) -> None:
        """
        Drop both connections, for them to be made again.
        """


class SubscriberWatch(Service):
    """
    Finds a subscriber connection that died without a word (a network that
    dropped it, a Redis that forgot it): the L{HungRedisWatchdog} watches
    only the command connection, and a dead subscriber would leave this
    process deaf to the others while it looks connected.  Every
    L{BEAT_INTERVAL} seconds, while connected, it publishes a heartbeat on
    a channel of this process's own, on the command connection; once Redis
    has answered that (so Redis is not hung, and has sent the message
    already), the subscriber must hear it within C{hearWithin} seconds, or
    both connections are dropped, to be made again (and the process
    catches up then, as after any lost connection).

    @ivar missed: how many heartbeats the subscriber did not hear.
    """

    log = Logger()

    def __init__(self, connection: Beating, reactor: Any, hearWithin: float = HEAR_WITHIN) -> None:
        self.connection = connection
        self.reactor = reactor
        self.hearWithin = hearWithin
        self.channel = f"{connection.prefix}beat:{connection.proc}"
        self.missed = 0
        self._beats = 0
        self._awaited: str | None = None
        self._timer: Any = None
        self._loop = LoopingCall(self._beat)
        self._loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        self.connection.subscribe(self.channel, self)
        self._loop.start(BEAT_INTERVAL, now=False)

    def stopService(self) -> None:
        super().stopService()
        self._awaited = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._loop.running:
            self._loop.stop()

    def received(self, message: str) -> None:
        if message == self._awaited:
            self._awaited = None

    def _beat(self) -> None:
        if not self.connection.connected or self._awaited is not None:
            return
        self._beats += 1
        beat = self._awaited = str(self._beats)
        d = self.connection.call("PUBLISH", self.channel, beat)
        # Not answered: the command connection's trouble, its watchdog's to find.
        d.addCallbacks(self._published, lambda failure: self._forget(beat), callbackArgs=(beat,))

    def _forget(self, beat: str) -> None:
        if self._awaited == beat:
            self._awaited = None

    def _published(self, receivers: Any, beat: str) -> None:
        if self._awaited == beat:
            # Then after the answers that came meanwhile are read (as _confirm).
            self._timer = self.reactor.callLater(self.hearWithin, self.reactor.callLater, 0, self._check, beat)

    def _check(self, beat: str) -> None:
        if self._awaited != beat or not self.running:
            return
        self._awaited = None
        self.missed += 1
        self.log.error("Redis at {url} sent nothing on the subscriber connection for {seconds} s: "
                       "connecting again", url=self.connection.url.text, seconds=self.hearWithin)
        self.connection.reconnect()
