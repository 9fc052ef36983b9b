"""
Redis behind Sentinel (C{--redis redis+sentinel://HOST:PORT,.../SERVICE/DB}):
every new connection goes to the server the sentinels name as the primary
of C{SERVICE} at that moment (L{SentinelEndpoint}), which must say it is
one (L{checkPrimary}).  L{chatthing.backplane.redis.following} drops the
connections when the primary moves, for them to be made again here.

Sentinel is asked before each connection rather than once: after a
failover the old address is either dead (refused: the connection's
L{ClientService} tries again, asking again) or a replica (L{checkPrimary}
fails, and the same happens).  What a connection does once made (log in,
catch up) is L{chatthing.backplane.redis.connection.RedisConnection}'s.
"""

import time
from typing import Any, Sequence

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ...live import LogThrottle, cut
from .protocols import RedisURL, protocols, tcpEndpoint

#: Seconds one sentinel may take to answer (connection and reply).
ASK_TIMEOUT = 1.0


log = Logger()


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
        if isinstance(answer, list) and len(answer) == 2 and str(answer[1]).isdigit():
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
        self.warnings = LogThrottle(time.monotonic, perInterval=1)

    def connect(self, protocolFactory: Any) -> Deferred:
        d = ensureDeferred(askSentinels(self.reactor, self.sentinels, self.service))
        d.addErrback(self._noPrimary)

        def found(address: tuple[str, int]) -> Deferred:
            if address != self.primary:
                self.log.info("Sentinel names {host}:{port} as the primary of {service}",
                              host=address[0], port=address[1], service=self.service)
                self.primary = address
            return tcpEndpoint(self.reactor, *address).connect(protocolFactory)

        return d.addCallback(found)

    def _noPrimary(self, failure: Failure) -> Failure:
        # The connection's ClientService tries again; say why, now and then.
        self.warnings.warn(self.log, "sentinels", "{error}", error=cut(failure.getErrorMessage()))
        return failure
