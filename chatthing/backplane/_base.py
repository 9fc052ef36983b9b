"""
What every backplane is, and what it says: the L{Backplane} and L{Roster}
protocols, the terms a roster speaks in (L{Presence}), and its errors.

A module of its own so that the backplanes (L{chatthing.backplane.memory},
L{chatthing.backplane.redis}) and the package that names them import it,
and it imports none of them: the arrows point one way.
"""

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred

from ..live import CallRefused, SessionStore, Stream

#: One remote call to publish: C{(method, args)}.
Call = tuple[str, list]


#: What a page is told when Redis answered a command with an error: the
#: error itself (Redis's text, key names...) goes to the log only.
STORE_UNREACHABLE = "The server could not reach its store; please try again in a moment."


@dataclass(frozen=True)
class Presence:
    """
    The terms a roster speaks in, which belong to the application: the
    remote call it publishes on a group's stream with a batch of changes
    (who joined the group, who left it: a rename is both), and what makes
    two names the same name.

    Changes, not whole lists, and gathered in batches by the application
    (L{Roster.publishChanges}), so that a crowd joining costs each page a
    few frames, not one per name.  The default names no application's
    widget method; an application gives its own (the chat: its widget's
    method and a lookalike-proof key, C{chatthing.chat.rooms.PRESENCE})
    with L{Roster.usePresence}.

    @ivar changed: the method called with C{[joined, left]}, two lists of
        names: a page removes those that left, then adds those that joined.
    @ivar nameKey: the key a name is held under: two names with the same
        key cannot be held at once.  It must give the same key in every
        process (a Redis roster compares keys there).
    @ivar manyLeft: when more than C{manyAbove} names of a dead process
        leave a group at once, the call C{(method, text)} published once
        for all of them instead of each holder's C{onLeave}: C{text} with
        C{{first}}, C{{second}} (the first two names, sorted) and
        C{{others}} (how many more) filled in.  L{None}: each holder's
        C{onLeave}, however many.
    @ivar manyAbove: see C{manyLeft}.
    @ivar listMax: past this many names in a group (0: no bound), its
        pages are told a window, not everyone: the first C{listMax} names
        by join order (the same on every process, kept from the shared
        list) and how many there are.  Each L{changed} call then carries
        only the changes to the window, and the count as a third argument
        (see L{chatthing.backplane.window}): a page of a room of N names
        receives a bounded list, not N names.
    """

    changed: str = "changed"
    nameKey: Callable[[str], str] = str.casefold
    manyLeft: tuple[str, str] | None = None
    manyAbove: int = 3
    listMax: int = 0

    @property
    def left(self) -> str:
        """
        The method the Redis cleanup scripts call with C{[[], names]} when
        a dead process's names leave: L{changed} (named so for the scripts'
        callers, which pass it as "the left method").
        """
        return self.changed


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
    Names held by sessions, unique across every process (by their
    L{Presence.nameKey}), each in a group; and each group's list of who is
    shown there, which changes only with the batches the application
    publishes (L{publishChanges}, a L{Presence.changed} call on the group's
    stream), so that the list and the stream agree in every process.

    Holding and releasing a name publish nothing: the application gathers
    joins and leaves and publishes them together.  Only when a process dies
    and its sessions do not come back does a roster publish by itself: the
    holders' C{onLeave} calls and one L{Presence.changed} per group.
    """

    @property
    def presence(self) -> Presence:
        """
        The terms this roster speaks in now.
        """

    def usePresence(self, presence: Presence) -> None:
        """
        Speak in the application's terms from now on: it calls this before
        any name is held.
        """

    def hold(self, holder: Any, name: str, group: str, stream: Stream,
             onLeave: list[Call]) -> Deferred:
        """
        Give C{holder} (a L{chatthing.live.LiveElement}) the C{name} in
        C{group}, letting go of any name it held; nothing is published (the
        application says who joined with L{publishChanges}).  C{onLeave} is
        what to publish on C{stream} if the holder's process dies and the
        session does not come back.

        @return: a L{Deferred} that fails with L{NameTaken} if someone else
            holds the name, or L{BackplaneDown}.
        """

    def confirm(self, holder: Any) -> Deferred:
        """
        Once the application has taken C{holder}'s L{hold} up (and saved
        its session with the name): a L{Deferred} firing once both would
        outlive the loss of the store's server (its replicas have them), so
        that a page is told it has the name only then; failing with
        L{BackplaneDown} if that cannot be confirmed (the application lets
        go of the name and tells the page).
        """

    def restore(self, holder: Any, name: str, group: str, stream: Stream,
                onLeave: list[Call]) -> None:
        """
        C{holder}'s session, which holds C{name} in C{group}, has moved to
        this process: remember it; nothing is published.
        """

    def release(self, holder: Any) -> Deferred:
        """
        C{holder} no longer holds its name (anyone may take it now); nothing
        is published.
        """

    def publishChanges(self, group: str, stream: Stream, calls: list[Call],
                       joined: list[str], left: list[str]) -> Deferred | None:
        """
        Publish on C{stream} C{calls} (alerts), then one
        L{Presence.changed} call with C{joined} and C{left}, and change
        C{group}'s list of who is shown to match, at once, so that
        L{members} and the stream agree.  A name in C{left} that someone
        holds under exactly that name again (they joined through another
        process meanwhile) is left out: its leave is stale.  Past
        L{Presence.listMax} names, the change published is the window's
        (and the count), and nothing at all if neither changed and there
        are no C{calls}.

        @return: L{None}, or a L{Deferred} firing once it is published.
        """

    def members(self, group: str, stream: Stream) -> Deferred:
        """
        The names shown in C{group} now (as the batches published so far
        left it), and the offset of C{stream} they are true at: a
        L{Deferred} firing with C{(names, offset)}; past L{Presence.listMax}
        names, with C{(window, offset, count)}, the window and how many
        names the group shows (as the wire tells a count only then).
        """

    def restoreGroup(self, group: str, names: list[str]) -> None:
        """
        C{group} showed C{names} when this process was stopped (the state
        file's, L{chatthing.chat.state}, read before any page comes): show
        them again, publishing nothing, unless the group shows someone
        already.  A big group's window is computed from this list, so it
        must hold what the pages show.  A roster whose groups outlive the
        process (Redis) ignores it.
        """

    def lookup(self, group: str, name: str) -> Deferred:
        """
        Whether C{group} shows C{name}, in or out of its window: a
        L{Deferred} firing with the name as shown (spelt as its holder
        spells it), or L{None}.  One name, so bounded whatever the group's
        size.
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
