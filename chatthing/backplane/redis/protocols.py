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
