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
    each in a group (a room) whose joins and leaves it publishes;
  - L{Backplane.sessions}: the session store of the live runtime, so that a
    page can take its session to another process.
"""

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred

from ..live import CallRefused, Stream
from ..live._sessionstore import SessionStore

#: One remote call to publish: C{(method, args)}.
Call = tuple[str, list]

#: The calls a roster publishes on a group's stream when a name joins the
#: group, or leaves it (a rename is both): changes, not whole lists, so
#: that a join costs the same in a room of ten or of ten thousand.
JOINED = "presenceJoined"
LEFT = "presenceLeft"


#: What a page is told when Redis answered a command with an error: the
#: error itself (Redis's text, key names...) goes to the log only.
STORE_UNREACHABLE = "The server could not reach its store; please try again in a moment."


class NameTaken(CallRefused):
    """
    Someone else holds the name.
    """


class BackplaneDown(CallRefused):
    """
    The backplane cannot be reached now, and what was asked needs it.
    """


class Roster(Protocol):
    """
    Names held by sessions, compared case-insensitively and unique across
    every process, each in a group whose changes (L{JOINED}, L{LEFT}) are
    published on that group's stream.
    """

    def hold(self, holder: Any, name: str, group: str, stream: Stream,
             announce: list[Call], onLeave: list[Call]) -> Deferred:
        """
        Give C{holder} (a L{chatthing.live.LiveElement}) the C{name} in
        C{group}, letting go of any name it held, then publish on C{stream}
        C{announce}, C{LEFT(old name)} if it had one, and C{JOINED(name)}.  C{onLeave} is what to
        publish if the holder's process dies and the session does not come
        back.

        @return: a L{Deferred} that fails with L{NameTaken} if someone else
            holds the name, or L{BackplaneDown}.
        """

    def restore(self, holder: Any, name: str, group: str, stream: Stream,
                onLeave: list[Call]) -> None:
        """
        C{holder}'s session, which holds C{name} in C{group}, has moved to
        this process: remember it; nothing is published.
        """

    def release(self, holder: Any, announce: list[Call]) -> Deferred:
        """
        C{holder} no longer holds its name: publish C{announce}, then
        C{LEFT(name)}.
        """

    def members(self, group: str, stream: Stream) -> Deferred:
        """
        The names in C{group} now, and the offset of C{stream} they are
        true at: a L{Deferred} firing with C{(names, offset)}.
        """


class Backplane(Protocol):
    """
    What an application asks of the backplane its processes share.

    C{roster} and C{sessions} are read-only here: a backplane keeps its own
    kind (a L{MemoryBackplane} has a C{MemoryRoster}), and a caller given a
    L{Backplane} reads them only.  As plain mutable attributes no backplane
    could satisfy this protocol (an attribute's type is invariant).
    """

    @property
    def roster(self) -> Roster:
        """
        The names held by sessions (a L{Roster}).
        """

    @property
    def sessions(self) -> SessionStore:
        """
        The runtime's L{SessionStore}.
        """

    def stream(self, key: str, name: str, history: int) -> Stream:
        """
        The stream called C{name} on the wire and C{key} among all the
        processes, keeping C{history} calls for pages that resume.
        """

    def passingStream(self, key: str, name: str) -> Stream:
        """
        A stream of passing events called C{name} on the wire and C{key}
        among the processes.
        """

    def problem(self) -> str | None:
        """
        L{None} if the backplane works, else why not (for C{/healthz}).
        """

    def onStatusChange(self, listener: Callable[[bool], None]) -> None:
        """
        Call C{listener(connected)} each time the backplane is lost or back.
        """


def memberList(names: Any) -> list[str]:
    """
    A group's member names in the order people read them.
    """
    return sorted(names, key=lambda name: (name.casefold(), name))


from .memory import MemoryBackplane  # noqa: E402

__all__ = ["JOINED", "LEFT", "STORE_UNREACHABLE", "Backplane", "BackplaneDown", "Call",
           "MemoryBackplane", "NameTaken", "Roster", "memberList"]
