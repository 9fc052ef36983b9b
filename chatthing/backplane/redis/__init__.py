"""
The Redis backplane: rooms, names and sessions shared by several processes
through one Redis server (C{twistd chat-widget --redis redis://host:port/db}).

L{RedisBackplane} (L{chatthing.backplane.redis.backplane}) puts together
parts that share one L{RedisConnection} (L{connection}): the streams
(L{streams}), the roster (L{roster}) and the session store (L{sessions}),
each running the Lua scripts of L{lua} in Redis.  Importing it installs no
reactor: txredisapi, which would, is imported when a backplane is made.
"""

from typing import Any

from .backplane import RedisBackplane
from .connection import RedisConnection
from .protocols import RedisURL, protocols
from .roster import RedisRoster
from .sessions import RedisSessions
from .streams import SharedPassingStream, SharedStream

__all__ = ["RedisBackplane", "RedisConnection", "RedisRoster", "RedisSessions", "RedisURL",
           "SharedPassingStream", "SharedStream"]


def __getattr__(name: str) -> Any:
    # The connections' protocol classes, C{_Commands} and C{_Subscriber},
    # stay reachable by name (tests use them), made when first asked for.
    if name in ("_Commands", "_Subscriber"):
        return protocols()[name == "_Subscriber"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
