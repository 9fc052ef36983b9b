"""
Redis behind Sentinel (C{--redis redis+sentinel://HOST:PORT,.../SERVICE/DB}):
every new connection goes to the server the sentinels name as the primary
of C{SERVICE} at that moment (L{SentinelEndpoint}), which must say it is
one (L{checkPrimary}); L{SwitchWatcher} drops the connections as soon as a
sentinel announces a failover (C{+switch-master}), so that they are made
again to the new primary.

Sentinel is asked before each connection rather than once: after a
failover the old address is either dead (refused: the connection's
L{ClientService} tries again, asking again) or a replica (L{checkPrimary}
fails, and the same happens).  What a connection does once made (log in,
catch up) is L{chatthing.backplane.redis.connection.RedisConnection}'s.
"""

from typing import Any, Callable, Protocol, Sequence

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .protocols import ConnectionFactory, RedisURL, protocols, tcpEndpoint

#: Seconds one sentinel may take to answer (connection and reply).
ASK_TIMEOUT = 1.0

log = Logger()

#: The channel on which sentinels announce a new primary:
#: C{"SERVICE OLD-IP OLD-PORT NEW-IP NEW-PORT"}.
SWITCH_CHANNEL = "+switch-master"


class NoPrimary(ConnectError):
    """
    No sentinel named a primary for the service (none answered, or none
    knows it): the connection is tried again later.
    """


class NotPrimary(Exception):
    """
    The server reached is not (or no longer) the primary: a replica, or an
    old primary that a failover demoted.
    """


async def askSentinels(reactor: Any, sentinels: Sequence[tuple[str, int]],
                       service: str) -> tuple[str, int]:
    """
    The C{(host, port)} of the primary of C{service}: the answer of the
    first of C{sentinels} that gives one to C{SENTINEL
    get-master-addr-by-name}, each asked in turn.

    @raise NoPrimary: if none does.
    """
    reasons = []
    for host, port in sentinels:
        try:
            answer = await _ask(reactor, host, port, service)
        except Exception as e:  # noqa: BLE001 (any failure: ask the next one)
            reasons.append(f"{host}:{port}: {type(e).__name__}: {e}")
            continue
        if isinstance(answer, list) and len(answer) == 2:
            return str(answer[0]), int(answer[1])
        reasons.append(f"{host}:{port}: knows no {service!r}")
    raise NoPrimary(f"no sentinel named the primary of {service!r} ({'; '.join(reasons)})")


async def _ask(reactor: Any, host: str, port: int, service: str) -> Any:
    commands, _ = protocols()
    protocol = await connectProtocol(tcpEndpoint(reactor, host, port), commands()) \
        .addTimeout(ASK_TIMEOUT, reactor)
    try:
        return await protocol.execute_command("SENTINEL", "get-master-addr-by-name", service) \
            .addTimeout(ASK_TIMEOUT, reactor)
    finally:
        protocol.transport.loseConnection()


def endpointFor(url: RedisURL, reactor: Any) -> Any:
    """
    Where each new connection for C{url} goes: the server itself, or
    whichever server the sentinels name as the primary at the time.
    """
    if url.service is None:
        return url.endpoint(reactor)
    return SentinelEndpoint(reactor, url.sentinels, url.service)


def checkRole(url: RedisURL, protocol: Any) -> Deferred:
    """
    Fail (for the connection to be made again) if C{protocol}'s server is
    not the one to use: behind Sentinel, one that is not the primary
    (L{checkPrimary}).
    """
    if url.service is None:
        return succeed(None)
    return checkPrimary(protocol)


def checkPrimary(protocol: Any) -> Deferred:
    """
    Fail with L{NotPrimary} unless the server at the other end of
    C{protocol} (a txredisapi command connection, logged in, not yet
    subscribed) answers C{ROLE} with C{master}.
    """
    def check(role: Any) -> None:
        if not role or role[0] != "master":
            raise NotPrimary(f"the server named as the primary says it is a {role and role[0]!r}")

    return protocol.execute_command("ROLE").addCallback(check)


@implementer(IStreamClientEndpoint)
class SentinelEndpoint:
    """
    Connects to the primary that the sentinels name at the time.

    @ivar primary: the address of the primary last connected to, or L{None}.
    """

    log = Logger()

    def __init__(self, reactor: Any, sentinels: Sequence[tuple[str, int]], service: str) -> None:
        self.reactor = reactor
        self.sentinels = list(sentinels)
        self.service = service
        self.primary: tuple[str, int] | None = None

    def connect(self, protocolFactory: Any) -> Deferred:
        d = ensureDeferred(askSentinels(self.reactor, self.sentinels, self.service))

        def found(address: tuple[str, int]) -> Deferred:
            if address != self.primary:
                self.log.info("Sentinel names {host}:{port} as the primary of {service}",
                              host=address[0], port=address[1], service=self.service)
                self.primary = address
            return tcpEndpoint(self.reactor, *address).connect(protocolFactory)

        return d.addCallback(found)


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
        super().__init__(_AnySentinel(reactor, sentinels),
                         ConnectionFactory(_switchProtocol(), self),
                         backoffPolicy(initialDelay=0.2, maxDelay=2.0),
                         prepareConnection=self._subscribe)

    def _subscribe(self, proxy: Any) -> Deferred:
        return proxy.whenConnected().addCallback(lambda protocol: protocol.subscribe(SWITCH_CHANNEL))

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
