"""
How a L{chatthing.backplane.redis.connection.RedisConnection} reaches
Redis: its URL (L{RedisURL}), the txredisapi protocols of its two
connections (made on first use: L{protocols}) and what takes the messages
of a channel (L{Receiver}).
"""

from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

#: The URL scheme of a Redis found through Sentinel (L{chatthing.backplane.redis.sentinel}).
SENTINEL_SCHEME = "redis+sentinel"

#: Sentinel's own port, for a sentinel address given without one.
SENTINEL_PORT = 26379


def tcpEndpoint(reactor: Any, host: str, port: int) -> Any:
    """
    A TCP client endpoint for C{host} (a name, an IPv4 or an IPv6 address)
    and C{port}.
    """
    host = f"[{host}]" if ":" in host else host
    return clientFromString(reactor, f"tcp:host={host.replace(':', chr(92) + ':')}:port={port}")


def _hostPort(text: str, default: int, url: str) -> tuple[str, int]:
    """
    C{HOST[:PORT]} (C{[V6]:PORT} for an IPv6 address) of C{url}, parsed.

    @raise ValueError: naming what is wrong.
    """
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {text!r} of {url!r}") from None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError(f"bad address {text!r} in {url!r}")
    return parts.hostname, port or default


class RedisURL:
    """
    C{redis://[:password@]host[:port][/db]}, or
    C{redis+sentinel://[:password@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]}
    (the primary that the sentinels at those addresses name for
    C{SERVICE}), parsed.

    @ivar sentinels: the sentinels' C{(host, port)}, or C{[]} for a plain
        C{redis://} URL.
    @ivar service: the name the sentinels monitor the primary as, or
        L{None} for a plain C{redis://} URL.
    @ivar password: the password of the Redis servers (the sentinels are
        asked without one), or L{None}.
    """

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        self.sentinels: list[tuple[str, int]] = []
        self.service: str | None = None
        if scheme == SENTINEL_SCHEME and rest:
            self._parseSentinel(url, rest)
            return
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "redis" or not parts.hostname or port == -1:
            raise ValueError(f"not a redis://host:port/db URL: {url!r}")
        self.host = parts.hostname
        self.port = port or 6379
        self.db = self._db(parts.path, url)
        self.password = unquote(parts.password) if parts.password else None
        self.text = f"redis://{self.host}:{self.port}/{self.db}"

    def _parseSentinel(self, url: str, rest: str) -> None:
        where, _, path = rest.partition("/")
        credentials, at, addresses = where.rpartition("@")
        self.password = None
        if at:
            if not credentials.startswith(":") or len(credentials) < 2:
                raise ValueError(f"the password of {url!r} must be given as :PASSWORD@")
            self.password = unquote(credentials[1:])
        self.sentinels = [_hostPort(address, SENTINEL_PORT, url) for address in addresses.split(",")]
        service, _, db = path.partition("/")
        if not service or "?" in path or "#" in path:
            raise ValueError(f"no /SERVICE name (what the sentinels monitor) in {url!r}")
        self.service = unquote(service)
        self.db = self._db(db, url)
        self.host, self.port = self.sentinels[0]
        shown = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        self.text = f"{SENTINEL_SCHEME}://{shown}/{self.service}/{self.db}"

    @staticmethod
    def _db(path: str, url: str) -> int:
        path = path.strip("/")
        if not path:
            return 0
        if not path.isdigit():
            raise ValueError(f"the database of {url!r} must be a number, not {path!r}")
        return int(path)

    @property
    def defaultReplicas(self) -> int:
        """
        How many replicas must have a message before its sender is told it
        was sent, unless told otherwise: one behind Sentinel (a failover
        must not lose what was acknowledged), none for a lone Redis.
        """
        return 1 if self.service is not None else 0

    def endpoint(self, reactor: Any) -> Any:
        """
        Where the server of a C{redis://} URL is (behind Sentinel, the
        server changes: L{chatthing.backplane.redis.sentinel.endpointFor}).
        """
        return tcpEndpoint(reactor, self.host, self.port)


class Receiver(Protocol):
    """
    What takes the messages of one pub/sub channel.
    """

    def received(self, message: str) -> None:
        """
        C{message} came on the channel.
        """


def protocols() -> tuple[type, type]:
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
            # send() per message instead of one per turn (chatthing.live's sending).
            def __init__(self) -> None:
                super().__init__(convertNumbers=False)

            def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
                self.factory.connection.messageReceived(channel, message)

        _madeProtocols = (_Commands, _Subscriber)
    return _madeProtocols


_madeProtocols: tuple[type, type] | None = None


class ConnectionFactory(Factory):
    """
    Makes one kind of Redis connection, which reaches its
    L{RedisConnection} through it (C{self.factory.connection}).
    """

    noisy = False

    def __init__(self, protocol: type, connection: Any) -> None:
        self.protocol = protocol
        self.connection = connection
