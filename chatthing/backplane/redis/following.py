"""
A L{RedisConnection} behind Sentinel leaves a primary that is no longer
one (L{follow}): when a sentinel announces a new primary
(C{+switch-master}, heard by L{SwitchWatcher}) and when a write is answered
C{READONLY} (L{dropIfReadOnly}).  Its connections are then made again,
through L{chatthing.backplane.redis.sentinel.SentinelEndpoint}, to the
primary the sentinels name.

Without this, a connection leaves an old primary only when it breaks: a
primary demoted by a switch-over, or still reachable behind a network
split, would go on taking writes that the new primary never gets.
"""

from typing import Any, Callable, Protocol, Sequence

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ...live import cut
from .protocols import ConnectionFactory, RedisURL, tcpEndpoint
from .sentinel import ASK_TIMEOUT, NoPrimary

#: The channel on which sentinels announce a new primary:
#: C{"SERVICE OLD-IP OLD-PORT NEW-IP NEW-PORT"}.
SWITCH_CHANNEL = "+switch-master"

log = Logger()


@implementer(IStreamClientEndpoint)
class _AnySentinel:
    """
    Connects to the first of the sentinels that accepts, each tried in turn.
    """

    def __init__(self, reactor: Any, sentinels: Sequence[tuple[str, int]]) -> None:
        self.reactor = reactor
        self.sentinels = list(sentinels)

    def connect(self, protocolFactory: Any) -> Deferred:
        return ensureDeferred(self._connect(protocolFactory))

    async def _connect(self, protocolFactory: Any) -> Any:
        failure: Exception = NoPrimary("no sentinel given")
        for host, port in self.sentinels:
            try:
                return await tcpEndpoint(self.reactor, host, port).connect(protocolFactory) \
                    .addTimeout(ASK_TIMEOUT, self.reactor)
            except Exception as e:  # noqa: BLE001 (any failure: try the next one)
                failure = e
        raise failure


class SwitchWatcher(ClientService):
    """
    Subscribed to C{+switch-master} on one sentinel (any that answers):
    when the primary of C{service} changes, C{switched(host, port)} is
    called, for the Redis connections to be made again at once, not only
    when they break (an old primary that stays reachable as a replica, or
    behind a network split).
    """

    log = Logger()

    def __init__(self, reactor: Any, sentinels: Sequence[tuple[str, int]], service: str,
                 switched: Callable[[str, int], None]) -> None:
        self.service = service
        self.switched = switched
        self.reactor = reactor
        super().__init__(_AnySentinel(reactor, sentinels),
                         ConnectionFactory(_switchProtocol(), self),
                         backoffPolicy(initialDelay=0.2, maxDelay=2.0),
                         prepareConnection=self._subscribe)

    def _subscribe(self, proxy: Any) -> Deferred:
        def subscribe(protocol: Any) -> Deferred:
            def failed(failure: Failure) -> None:
                # Drop it for the ClientService to try again (failing the
                # preparation instead trips up its state machine: see
                # RedisConnection._notUp).
                self.log.warn("could not follow Sentinel's announcements: {error}",
                              error=cut(failure.getErrorMessage()))
                protocol.transport.abortConnection()

            d = protocol.subscribe(SWITCH_CHANNEL).addTimeout(ASK_TIMEOUT, self.reactor)
            return d.addErrback(failed)

        return proxy.whenConnected().addCallback(subscribe)

    def messageReceived(self, channel: str, message: str) -> None:
        """
        A sentinel said C{"SERVICE OLD-IP OLD-PORT NEW-IP NEW-PORT"}.
        """
        words = str(message).split()
        if channel != SWITCH_CHANNEL or len(words) != 5 or words[0] != self.service:
            return
        if not words[4].isdigit():
            return
        self.log.warn("Sentinel: the primary of {service} moved from {old} to {new}",
                      service=self.service, old=f"{words[1]}:{words[2]}", new=f"{words[3]}:{words[4]}")
        self.switched(words[3], int(words[4]))


def _switchProtocol() -> type:
    """
    The subscriber protocol of L{SwitchWatcher}, made on first use (as
    L{protocols}, for txredisapi is imported then).
    """
    global _madeSwitchProtocol
    if _madeSwitchProtocol is None:
        import txredisapi

        class _Switches(txredisapi.SubscriberProtocol):
            def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
                self.factory.connection.messageReceived(channel, message)

        _madeSwitchProtocol = _Switches
    return _madeSwitchProtocol


_madeSwitchProtocol: type | None = None


class Following(Protocol):
    """
    What L{follow} and L{dropIfReadOnly} need of a
    L{chatthing.backplane.redis.connection.RedisConnection} (a
    L{MultiService}, which the watcher joins).
    """

    url: RedisURL
    reactor: Any

    @property
    def commands(self) -> Any:
        """
        The command connection in use, or L{None}.
        """

    def reconnect(self) -> None:
        """
        Drop both connections, to be made again.
        """

    def abort(self, commands: Any = None) -> None:
        """
        Drop the command connection C{commands} if it is still in use.
        """


def follow(connection: Following) -> None:
    """
    Make a L{RedisConnection} behind Sentinel follow the primary: its
    connections are made again when a sentinel announces a new one (unless
    they are there already).  Nothing for a plain C{redis://} URL.
    """
    url = connection.url
    if url.service is None:
        return

    def switched(host: str, port: int) -> None:
        commands = connection.commands
        if commands is not None and commands.transport is not None:
            peer = commands.transport.getPeer()
            if (peer.host, peer.port) == (host, port):
                return
        connection.reconnect()

    watcher = SwitchWatcher(connection.reactor, url.sentinels, url.service, switched)
    watcher.setServiceParent(connection)


def dropIfReadOnly(failure: Failure, connection: Following, commands: Any) -> Failure:
    """
    An errback for a command sent on C{commands}: a C{READONLY} error says
    its server was made a replica (a failover), so drop the connection, to
    be made again to the primary.  The failure goes on.
    """
    if failure.getErrorMessage().startswith("READONLY"):
        log.warn("Redis at {url} is a replica now; reconnecting", url=connection.url.text)
        connection.abort(commands)
    return failure
