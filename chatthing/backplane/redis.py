"""
L{RedisBackplane}: rooms, names and sessions shared by several processes
through one Redis server (C{twistd chat-widget --redis redis://host:port/db}).

Each process holds two connections to Redis (txredisapi protocols, kept up
by L{ClientService}s): one for commands and scripts, one subscribed to the
channels of the streams it serves and to its own hand-off channel.  It is
I{connected} while both are up and it has caught up after (re)connecting;
until then rooms fall back to this process's pages, names cannot be taken,
and C{/healthz} says the backplane is unreachable.
"""

import math
import os
import secrets
import socket
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..live import Stream
from . import BackplaneDown, _lua
from ._cluster import LEFT_METHOD, RedisRoster, RedisSessions
from ._shared import SharedPassingStream, SharedStream

#: Seconds between heartbeats; a process whose last heartbeat is older than
#: C{DEAD_AFTER} is taken for dead.
HEARTBEAT_INTERVAL = 1.0
DEAD_AFTER = 3.0

#: Seconds a command may take before the connection is taken for broken.
COMMAND_TIMEOUT = 5.0

#: Seconds past the grace period that Redis keeps the key naming one
#: publication of a page's call, so that the call, sent again by its page
#: after its process died, is not published twice.  A page sends its calls
#: again when it resumes, within its grace period of the drop (a budget that
#: resumes do not restart: L{chatthing.live.LiveSession}); the margin covers
#: a drop not yet noticed (ping interval and timeout: 25 s by default) and a
#: process not yet taken for dead (L{DEAD_AFTER}).  It was an hour: about
#: 1 GiB of Redis an hour at 1,000 messages a second.
DEDUPE_MARGIN = 60

#: Seconds a login waits for Redis (while the process starts, or Redis is
#: back in a moment) before it is refused.
LOGIN_WAIT = 3.0


class RedisURL:
    """
    C{redis://[:password@]host[:port][/db]}, parsed.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"not a redis://host:port/db URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 6379
        path = parts.path.strip("/")
        self.db = int(path) if path else 0
        self.password = unquote(parts.password) if parts.password else None
        self.text = f"redis://{self.host}:{self.port}/{self.db}"

    def endpoint(self, reactor: Any) -> Any:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return clientFromString(reactor, f"tcp:host={host.replace(':', chr(92) + ':')}:port={self.port}")


def _protocols() -> tuple[type, type]:
    """
    The protocols of the command and subscriber connections, made on first
    use: txredisapi imports C{twisted.internet.reactor} when it is imported,
    which would install the global reactor whenever this module is imported
    (by C{chatthing.tap}, say, before twistd or a user chose one).
    """
    global _madeProtocols
    if _madeProtocols is None:
        import txredisapi

        class _Commands(txredisapi.RedisProtocol):
            # No replyTimeout: txredisapi drops the whole connection when one reply
            # is late (seen under 10,000 logins at once); each call has its own
            # timeout instead, and a connection that stops answering is found by
            # the heartbeat.
            def __init__(self) -> None:
                super().__init__(convertNumbers=False)

        class _Subscriber(txredisapi.SubscriberProtocol):
            # On hiredis (a dependency), so that every message of one read is
            # delivered in the same reactor turn: txredisapi's own parser defers
            # the rest of a read after each reply, and a page would then get one
            # send() per message instead of one per turn (chatthing.live._sending).
            def __init__(self) -> None:
                super().__init__(convertNumbers=False)

            def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
                self.factory.backplane.messageReceived(channel, message)

        _madeProtocols = (_Commands, _Subscriber)
    return _madeProtocols


_madeProtocols: tuple[type, type] | None = None


def __getattr__(name: str) -> Any:
    # C{_Commands} and C{_Subscriber} stay reachable by name (tests use
    # them), made when first asked for.
    if name in ("_Commands", "_Subscriber"):
        return _protocols()[name == "_Subscriber"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _BackplaneFactory(Factory):
    """
    Makes one kind of the backplane's Redis connections, which reach their
    backplane through it (C{self.factory.backplane}).
    """

    noisy = False

    def __init__(self, protocol: type, backplane: "RedisBackplane") -> None:
        self.protocol = protocol
        self.backplane = backplane


def _factory(protocol: type, backplane: "RedisBackplane") -> Factory:
    return _BackplaneFactory(protocol, backplane)


class RedisBackplane(MultiService):
    """
    The backplane of one of several processes sharing a chat through Redis.

    @ivar connected: whether Redis can be used now.
    @ivar proc: this process's name among the others.
    """

    log = Logger()

    def __init__(self, url: str, gracePeriod: float, reactor: Any = None,
                 prefix: str = "chatthing:") -> None:
        super().__init__()
        self.setName("backplane")
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.url = RedisURL(url)
        self.gracePeriod = gracePeriod
        self.dedupeSeconds = int(math.ceil(gracePeriod)) + DEDUPE_MARGIN
        self.deadAfter = DEAD_AFTER
        self.loginWait = LOGIN_WAIT
        self.prefix = prefix
        self.proc = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.connected = False
        self.roster = RedisRoster(self)
        self.sessions = RedisSessions(self)
        self._streams: dict[str, Any] = {}
        self._listeners: list[Callable[[bool], None]] = []
        self._connecting: list[Deferred] = []
        self._commands: Any = None
        self._subscriber: Any = None
        self._everConnected = False
        self._resyncing = False
        self._generation = 0
        self._origins = 0
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        retry = backoffPolicy(initialDelay=0.2, maxDelay=2.0)
        commands, subscriber = _protocols()
        ClientService(self.url.endpoint(reactor), _factory(commands, self), retry,
                      prepareConnection=self._commandsUp).setServiceParent(self)
        ClientService(self.url.endpoint(reactor), _factory(subscriber, self), retry,
                      prepareConnection=self._subscriberUp).setServiceParent(self)

    def __repr__(self) -> str:
        return f"<RedisBackplane {self.url.text} as {self.proc}>"

    # What the application asks for

    def stream(self, key: str, name: str, history: int) -> Stream:
        stream = SharedStream(self, f"{self.prefix}stream:{key}", name, history)
        self._addChannel(stream.key, stream)
        return stream

    def passingStream(self, key: str, name: str) -> Stream:
        stream = SharedPassingStream(self, f"{self.prefix}passing:{key}", name)
        self._addChannel(stream.key, stream)
        return stream

    def forgetStream(self, stream: Any) -> None:
        if self._streams.pop(stream.key, None) is not None and self._subscriber is not None:
            self._subscriber.unsubscribe(stream.key).addErrback(lambda failure: None)

    def problem(self) -> str | None:
        if self.connected:
            return None
        return f"backplane unreachable ({self.url.text})"

    def onStatusChange(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def whenConnected(self, timeout: float | None = None) -> Deferred:
        """
        A L{Deferred} firing with C{True} once Redis can be used (at once if
        it can now), or with C{False} after C{timeout} seconds.
        """
        if self.connected:
            return succeed(True)
        d: Deferred = Deferred()
        self._connecting.append(d)
        if timeout is not None:
            def timedOut() -> None:
                if not d.called:
                    d.callback(False)

            timer = self.reactor.callLater(timeout, timedOut)
            d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return d

    def nextOrigin(self) -> str:
        """
        A name for one publication of this process's.
        """
        self._origins += 1
        return f"{self.proc}/{self._origins}"

    # Commands

    def call(self, *command: Any) -> Deferred:
        if self._commands is None:
            return fail(BackplaneDown("Redis cannot be reached"))
        return self._commands.execute_command(*command).addTimeout(COMMAND_TIMEOUT, self.reactor)

    def script(self, source: str, keys: list, args: list) -> Deferred:
        if self._commands is None:
            return fail(BackplaneDown("Redis cannot be reached"))
        d = self._commands.eval(source, keys, [str(arg) for arg in args])
        return d.addTimeout(COMMAND_TIMEOUT, self.reactor)

    # Connections

    def _addChannel(self, channel: str, stream: Any) -> None:
        self._streams[channel] = stream
        if self._subscriber is not None:
            d = self._subscriber.subscribe(channel)
            if isinstance(stream, SharedStream):
                d.addCallback(lambda _: stream.catchUp())
            d.addErrback(self._connectionTrouble, "subscribe")

    # ClientService hands prepareConnection a proxy of the protocol; its
    # whenConnected() fires with the protocol itself, which is what its
    # whenDisconnected() fires with too.  Twisted types that proxy as an
    # IProtocol, which has no whenConnected(): hence Any.

    def _commandsUp(self, proxy: Any) -> Deferred:
        return proxy.whenConnected().addCallback(
            self._setUp, "command", lambda protocol: protocol.select(self.url.db))

    def _subscriberUp(self, proxy: Any) -> Deferred:
        channels = [f"{self.prefix}handoff:{self.proc}", *self._streams]
        return proxy.whenConnected().addCallback(
            self._setUp, "subscriber", lambda protocol: protocol.subscribe(channels))

    def _setUp(self, protocol: Any, which: str, prepare: Callable[[Any], Deferred]) -> Deferred:
        """
        Log in on a new connection, C{prepare} it, then use it as this
        backplane's C{which} connection.
        """
        d = succeed(None)
        if self.url.password is not None:
            d.addCallback(lambda _: protocol.auth(self.url.password))
        d.addCallback(lambda _: prepare(protocol))

        def up(_: Any) -> None:
            if which == "command":
                self._commands = protocol
            else:
                self._subscriber = protocol
            protocol.whenDisconnected().addCallback(self._lost, which)
            self._maybeConnected()

        return d.addCallbacks(up, self._notUp, errbackArgs=(protocol,))

    def _notUp(self, failure: Failure, protocol: Any) -> None:
        # Drop the connection for the ClientService to retry (failing its
        # prepareConnection instead trips up its state machine when the
        # connection closes afterwards).
        self.log.warn("could not set up a connection to Redis: {error}",
                      error=failure.getErrorMessage())
        if protocol.transport is not None:
            protocol.transport.abortConnection()

    def _lost(self, protocol: Any, which: str) -> None:
        self._generation += 1
        self._resyncing = False
        for stream in self._streams.values():
            if isinstance(stream, SharedStream):
                stream.interrupted()
        if protocol is self._commands:
            self._commands = None
        if protocol is self._subscriber:
            self._subscriber = None
        if self.connected:
            self.connected = False
            self.log.error("lost Redis at {url} ({which} connection closed); serving this "
                           "process's pages only until it is back", url=self.url.text, which=which)
            self._tell(False)

    def _connectionTrouble(self, failure: Failure, what: str) -> None:
        self.log.warn("Redis {what} failed: {error}", what=what, error=failure.getErrorMessage())

    def _maybeConnected(self) -> None:
        if self._commands is None or self._subscriber is None or self.connected or self._resyncing:
            return
        self._resyncing = True
        generation = self._generation
        d = self._resync()
        d.addTimeout(COMMAND_TIMEOUT, self.reactor)

        def done(_: Any) -> None:
            if generation != self._generation:
                return  # a connection was lost meanwhile: a new resync follows
            self._resyncing = False
            if self._commands is None or self._subscriber is None:
                return
            self.connected = True
            self.log.info("connected to Redis at {url} as {proc}", url=self.url.text, proc=self.proc)
            waiting, self._connecting = self._connecting, []
            for d in waiting:
                if not d.called:
                    d.callback(True)
            if self._everConnected:
                self._tell(True)
            self._everConnected = True

        def failed(failure: Failure) -> None:
            if generation != self._generation:
                return
            self._resyncing = False
            self.log.warn("could not resync with Redis: {error}", error=failure.getErrorMessage())
            if self._commands is not None:
                self._commands.transport.abortConnection()

        d.addCallbacks(done, failed)

    def _resync(self) -> Deferred:
        """
        Catch up with Redis after (re)connecting: heartbeat, make every
        stream's numbering go on after what this process has delivered,
        read what was missed, and record again this process's sessions
        and names (a Redis that restarted empty has lost them).
        """
        streams = [s for s in self._streams.values() if isinstance(s, SharedStream)]
        floors = [self.script(_lua.FLOOR, [s.key], [s.offset]) for s in streams if s.offset]
        d = gatherResults([self._beatOnce(), *floors], consumeErrors=True)
        d.addCallback(lambda _: self.sessions.resync())
        d.addCallback(lambda _: self.roster.resync())
        d.addCallback(lambda _: gatherResults([s.catchUp() for s in streams], consumeErrors=True))
        return d

    def _tell(self, connected: bool) -> None:
        for listener in self._listeners:
            try:
                listener(connected)
            except Exception:
                self.log.failure("backplane listener {listener!r} raised", listener=listener)

    # Heartbeat

    def _beatOnce(self) -> Deferred:
        d = self.script(
            _lua.HEARTBEAT, [f"{self.prefix}procs"],
            [self.prefix, self.proc, int(self.deadAfter * 1000), int(self.gracePeriod * 1000),
             1000, LEFT_METHOD],
        )

        def reaped(ended: Any) -> None:
            if ended:
                self.log.info("ended {count} sessions of processes that died: {ids}",
                              count=len(ended), ids=", ".join(s[:6] for s in ended))

        return d.addCallback(reaped)

    def _beat(self) -> None:
        if not self.connected:
            return
        commands = self._commands
        d = self._beatOnce()
        d.addTimeout(COMMAND_TIMEOUT, self.reactor)

        def failed(failure: Failure) -> None:
            self.log.warn("Redis heartbeat failed: {error}", error=failure.getErrorMessage())
            if commands is not None and commands is self._commands and commands.transport:
                commands.transport.abortConnection()

        d.addErrback(failed)

    # Messages

    def messageReceived(self, channel: str, message: str) -> None:
        if channel == f"{self.prefix}handoff:{self.proc}":
            self.roster.held.pop(message, None)
            self.sessions.live.pop(message, None)
            self.sessions.movedAway(message)
            return
        stream = self._streams.get(channel)
        if isinstance(stream, SharedStream):
            seq, origin, call = message.split(" ", 2)
            stream.received(int(seq), origin, call)
        elif stream is not None:
            stream.received(message)

    # Service

    def startService(self) -> None:
        super().startService()
        self._heartbeat.start(HEARTBEAT_INTERVAL, now=False)

    def stopService(self) -> Deferred:
        if self._heartbeat.running:
            self._heartbeat.stop()
        self.connected = False
        return super().stopService()
