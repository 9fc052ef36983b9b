"""
Where sessions are kept so that a page can take its session to another
process: L{SessionStore} is what the runtime asks of it, L{LocalSessions}
the store of a server that runs alone (sessions live in its memory only).
"""

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, succeed


@dataclass(frozen=True)
class SessionRecord:
    """
    What another process needs to carry on a page's session: the page's
    path (to make its element) and the element's L{sessionState
    <chatthing.live.LiveElement.sessionState>}.
    """

    page: str
    state: Any
    #: The page's numbered frames already run by the process that saved
    #: the session (0 if unknown: the page sends again what was not
    #: acknowledged, and a shared stream runs each call once).
    receivedSeq: int = 0


class StatefulElement(Protocol):
    def sessionState(self) -> Any:
        """
        What another process needs to carry on the element's page.
        """


class StoredSession(Protocol):
    """
    What a store reads of a session (a L{chatthing.live.LiveSession}): its
    id, its page's path and its element's state; declared here so that the
    store need not know the session's class, which uses the store.
    """

    @property
    def ident(self) -> str: ...

    @property
    def page(self) -> str: ...

    @property
    def element(self) -> StatefulElement: ...


class SessionStore(Protocol):
    """
    Keeps a record of each session outside this process, so that a page
    whose process died, or that its balancer sent elsewhere, can resume its
    session on another process.

    @ivar movedAway: set by the runtime: called with a session's id when
        another process has taken that session over, so that this one lets
        go of it without ending it.
    @ivar epoch: names the store's history (L{None}: it has none to lose):
        it changes when the store lost what it kept (a Redis restarted with
        nothing saved), and pages are told it in C{welcome} and C{resumed}.
    @ivar epochChanged: set by the runtime: called with the new L{epoch}
        when it changes, so that the pages here now are told at once.
    """

    movedAway: Callable[[str], None]
    epoch: str | None
    epochChanged: Callable[[str], None]

    def save(self, session: StoredSession) -> None:
        """
        Record C{session} (its page and its element's state) as this
        process's.
        """

    def forget(self, session: StoredSession) -> None:
        """
        C{session} has ended: no other process may take it over.
        """

    def adopt(self, ident: str) -> Deferred:
        """
        Take the session C{ident} over from the process that had it.

        @return: a L{Deferred} firing with its L{SessionRecord}, or L{None}
            if there is no such session to take over.
        """


def _nothing(ident: str) -> None:
    """
    A L{LocalSessions}' C{movedAway} until the runtime sets its own: no other
    process takes sessions from a process that runs alone.
    """


class LocalSessions:
    """
    The store of a process that runs alone: nothing to record, nothing to
    adopt.
    """

    def __init__(self) -> None:
        self.movedAway: Callable[[str], None] = _nothing
        self.epoch: str | None = None
        self.epochChanged: Callable[[str], None] = _nothing

    def save(self, session: StoredSession) -> None:
        pass

    def forget(self, session: StoredSession) -> None:
        pass

    def adopt(self, ident: str) -> Deferred:
        return succeed(None)
