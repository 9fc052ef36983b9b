"""
L{RedisConnection}: the one link to Redis that every part of a
L{chatthing.backplane.redis.RedisBackplane} (its streams, roster and
session store) uses, so that none of them calls back into the backplane.

It holds two connections to Redis (txredisapi protocols, kept up by L{ClientService}s): one for commands
and scripts, one subscribed to the channels of its L{Receiver}s.  It is I{connected} while both are up and
its owner has caught up after (re)connecting (L{RedisConnection.resync}); until then its parts fall back to
this process.  Its L{HungRedisWatchdog} and L{SubscriberWatch} find a Redis silent on a connection still open.
"""

import os
import secrets
import socket
from typing import Any, Callable

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import BackplaneDown
from .protocols import ConnectionFactory, Receiver, RedisURL, protocols
from .replicas import WAIT_SECONDS, ReplicaWait
from .following import dropIfReadOnly, follow
from .sentinel import checkRole, endpointFor
from .watchdog import HungRedisWatchdog, SubscriberWatch

#: Seconds a command may take before the connection is taken for broken.
COMMAND_TIMEOUT = 5.0


class RedisConnection(MultiService):
    """
    The command and subscriber connections to one Redis server, shared by
    the parts of a backplane.

    @ivar connected: whether Redis can be used now.
    @ivar proc: this process's name among the others.
    @ivar prefix: what every key and channel name starts with.
    @ivar resync: set by the owner: what to do once both connections are up again (a L{Deferred}).
    @ivar interrupted: set by the owner: called when a connection is lost.
    @ivar replicaWait: confirms writes once enough replicas have them (C{replicas}: by default one
        behind Sentinel, else none) within C{replicaWait} seconds.
    """

    log = Logger()

    def __init__(self, url: RedisURL, reactor: Any, prefix: str, replicas: int | None = None,
                 replicaWait: float = WAIT_SECONDS) -> None:
        super().__init__()
        self.url = url
        self.reactor = reactor
        self.prefix = prefix
        self.proc = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.connected = False
        self.resync: Callable[[], Deferred] = lambda: succeed(None)
        self.interrupted: Callable[[], None] = lambda: None
        self.receivers: dict[str, Receiver] = {}
        self._listeners: list[Callable[[bool], None]] = []
        self._connecting: list[Deferred] = []
        self._commands: Any = None
        self._subscriber: Any = None
        self._prepared: list[str] = []
        self._everConnected = False
        self._resyncing = False
        self._generation = 0
        self._origins = 0
        self.watchdog = HungRedisWatchdog(self, reactor)
        self.watchdog.setServiceParent(self)
        self.subscriberWatch = SubscriberWatch(self, reactor)
        self.subscriberWatch.setServiceParent(self)
        retry = backoffPolicy(initialDelay=0.2, maxDelay=2.0)
        commands, subscriber = protocols()
        ClientService(endpointFor(url, reactor), ConnectionFactory(commands, self), retry,
                      prepareConnection=self._commandsUp).setServiceParent(self)
        ClientService(endpointFor(url, reactor), ConnectionFactory(subscriber, self), retry,
                      prepareConnection=self._subscriberUp).setServiceParent(self)
        self.replicaWait = ReplicaWait(reactor, url.defaultReplicas if replicas is None else replicas,
                                       round(replicaWait * 1000))
        follow(self)

    def __repr__(self) -> str:
        return f"<RedisConnection {self.url.text} as {self.proc}>"

    def onStatusChange(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def removeStatusListener(self, listener: Callable[[bool], None]) -> None:
        """Forget C{listener}: a closed room's stream is not kept alive by the connection."""
        self._listeners[:] = [each for each in self._listeners if each != listener]

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
            d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda result, timeout: False)
        return d

    def nextOrigin(self) -> str:
        """A name for one publication of this process's."""
        self._origins += 1
        return f"{self.proc}/{self._origins}"

    # Commands

    def call(self, *command: Any) -> Deferred:
        if self._commands is None:
            return fail(BackplaneDown("Redis cannot be reached"))
        d = self._commands.execute_command(*command).addTimeout(COMMAND_TIMEOUT, self.reactor)
        return d.addErrback(dropIfReadOnly, self, self._commands)

    def script(self, source: str, keys: list, args: list) -> Deferred:
        if self._commands is None:
            return fail(BackplaneDown("Redis cannot be reached"))
        d = self._commands.eval(source, keys, [str(arg) for arg in args])
        return d.addTimeout(COMMAND_TIMEOUT, self.reactor).addErrback(dropIfReadOnly, self, self._commands)

    def abort(self, commands: Any = None) -> None:
        """Drop the command connection (C{commands}, if it is still the one in
        use) for its L{ClientService} to make again: it stopped answering."""
        if commands is None:
            commands = self._commands
        if commands is not None and commands is self._commands and commands.transport:
            commands.transport.abortConnection()

    @property
    def commands(self) -> Any:
        """The command connection in use, or L{None}."""
        return self._commands

    # Channels

    def subscribe(self, channel: str, receiver: Receiver,
                  andThen: Callable[[], Any] | None = None) -> None:
        """
        Give C{receiver} what comes on C{channel}, from now on and on every
        later connection; if the subscriber is connected now, call
        C{andThen()} once subscribed (else L{resync} is the owner's
        chance: it runs once the subscriber, subscribed, is back).
        """
        self.receivers[channel] = receiver
        if self._subscriber is None:
            return
        d = self._subscriber.subscribe(channel)
        if andThen is not None:
            d.addCallback(lambda _: andThen())
        d.addErrback(lambda failure: self.log.warn("Redis subscribe failed: {error}",
                                                   error=failure.getErrorMessage()))

    def unsubscribe(self, channel: str) -> None:
        if self.receivers.pop(channel, None) is not None and self._subscriber is not None:
            self._subscriber.unsubscribe(channel).addErrback(lambda failure: None)

    def messageReceived(self, channel: str, message: str) -> None:
        receiver = self.receivers.get(channel)
        if receiver is not None:
            receiver.received(message)

    # Connections
    #
    # ClientService hands prepareConnection a proxy of the protocol; its
    # whenConnected() fires with the protocol itself, which is what its
    # whenDisconnected() fires with too.  Twisted types that proxy as an
    # IProtocol, which has no whenConnected(): hence Any.

    def _commandsUp(self, proxy: Any) -> Deferred:
        def prepare(protocol: Any) -> Deferred:
            d = protocol.select(self.url.db)
            return d.addCallback(lambda _: self.watchdog.measure(protocol))

        return proxy.whenConnected().addCallback(self._setUp, "command", prepare)

    def _subscriberUp(self, proxy: Any) -> Deferred:
        def prepare(protocol: Any) -> Deferred:
            self._prepared = list(self.receivers)
            return protocol.subscribe(self._prepared)

        return proxy.whenConnected().addCallback(self._setUp, "subscriber", prepare)

    def _setUp(self, protocol: Any, which: str, prepare: Callable[[Any], Deferred]) -> Deferred:
        """
        Log in on a new connection, C{prepare} it, then use it as the
        C{which} connection.
        """
        d = succeed(None)
        if self.url.password is not None:
            d.addCallback(lambda _: protocol.auth(self.url.password))
        d.addCallback(lambda _: checkRole(self.url, protocol))
        d.addCallback(lambda _: prepare(protocol))

        def up(_: Any) -> None:
            if which == "command":
                self._commands = protocol
            else:  # and the channels of streams opened while it was set up:
                self._subscriber = protocol
                late = [channel for channel in self.receivers if channel not in self._prepared]
                if late:
                    protocol.subscribe(late)
            protocol.whenDisconnected().addCallback(self._lost, which)
            self._maybeConnected()

        return d.addCallbacks(up, self._notUp, errbackArgs=(protocol,))

    def _notUp(self, failure: Failure, protocol: Any) -> None:
        # Dropped for the ClientService to retry (failing its prepareConnection
        # trips up its state machine when the connection closes after).
        self.log.warn("could not set up a connection to Redis: {error}",
                      error=failure.getErrorMessage())
        if protocol.transport is not None:
            protocol.transport.abortConnection()

    def _lost(self, protocol: Any, which: str) -> None:
        self.interrupted()
        if protocol is self._commands:
            self._commands = None
        if protocol is self._subscriber:
            self._subscriber = None
        self._down(f"{which} connection closed")

    def hung(self, commands: Any) -> None:
        """
        Redis stopped answering on C{commands} (L{HungRedisWatchdog}): not
        I{connected} until it L{answering} again, or the connection is made
        again.
        """
        if commands is self._commands:
            self._down("it stopped answering")

    def answering(self, commands: Any) -> None:
        if commands is self._commands:
            self._maybeConnected()

    def _down(self, why: str) -> None:
        self._generation += 1
        self._resyncing = False
        if self.connected:
            self.connected = False
            self.log.error("lost Redis at {url} ({why}); what needs it is refused "
                           "until it is back", url=self.url.text, why=why)
            self._tell(False)

    def _maybeConnected(self) -> None:
        if self._commands is None or self._subscriber is None or self.connected or self._resyncing:
            return
        self._resyncing = True
        generation = self._generation
        d = self.resync()
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

    def _tell(self, connected: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(connected)
            except Exception:
                self.log.failure("backplane listener {listener!r} raised", listener=listener)

    def stopService(self) -> Deferred:
        self.connected = False
        return super().stopService()

    def reconnect(self) -> None:
        """Drop both connections, for their L{ClientService}s to make them again
        (to a new primary: L{chatthing.backplane.redis.sentinel})."""
        for protocol in (self._commands, self._subscriber):
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abortConnection()
