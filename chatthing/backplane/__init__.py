"""
The backplane: what carries a room's messages, its roster of names and the
pages' sessions between the processes serving one chat.

L{MemoryBackplane} (the default) keeps it all in one process.
L{chatthing.backplane.redis.RedisBackplane} shares it between processes
through Redis (C{twistd chat-widget --redis redis://host:port/db}).  An
application asks its backplane for:

  - L{Backplane.stream}: a L{chatthing.live.Stream} whose calls reach the
    pages of every process subscribed to it, numbered in one order for all;
  - L{Backplane.passingStream}: the same for passing events, not replayed;
  - L{Backplane.roster}: names held by sessions, unique across the cluster,
    each in a group (a room) whose joins and leaves it publishes, in the
    application's terms (L{Presence});
  - L{Backplane.sessions}: the session store of the live runtime, so that a
    page can take its session to another process.

It builds on L{chatthing.live}'s public names only, and knows nothing of
chat: the application names the calls its roster publishes and what makes
two names the same (L{Presence}).
"""

from ._base import (
    STORE_UNREACHABLE,
    Backplane,
    BackplaneDown,
    Call,
    NameTaken,
    Presence,
    Roster,
    memberList,
)
from .memory import MemoryBackplane, MemoryRoster

__all__ = ["STORE_UNREACHABLE", "Backplane", "BackplaneDown", "Call", "MemoryBackplane",
           "MemoryRoster", "NameTaken", "Presence", "Roster", "memberList"]
