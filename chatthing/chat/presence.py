"""
Presence changes gathered per room: who joins, leaves and changes name is
published as one batch per interval, not one frame per change.

A crowd logging in at once would otherwise send every page of the room a
few frames per login (the alert, the change, the time): N logins, about
2.5 N^2 frames.  A L{PresenceBatch} gathers the changes and nets them out
(a name that joins and leaves within one batch was never shown), and says
them as a few alert lines (L{alertLines}); a L{PresenceThrottle} decides
when a batch goes: at once in a quiet room, so a small room sees a login as
it happens, and at most once per interval while changes keep coming.
"""

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.logger import Logger

from ..live import defaultReactor

#: Seconds over which a busy room's presence changes are gathered into one
#: batch (the first change in a quiet room is published at once).
PRESENCE_INTERVAL = 0.25

#: How many batch deliveries a second a busy room's presence may cost its
#: process at most: the interval between batches grows with the room's
#: pages past C{PRESENCE_DELIVERIES_PER_SECOND * PRESENCE_INTERVAL} of them
#: (2,500), so that a join storm of N pages, which lasts as long as N
#: pages take to connect, costs each page the same few batches however big
#: the room (a line, not a parabola): 0.5 s at 5,000 pages, 2 s at 20,000.
PRESENCE_DELIVERIES_PER_SECOND = 10_000

#: Up to this many joins (or leaves, or renames) in one batch are told one
#: line each, as in a small room; more are told in one line.
ALERT_THRESHOLD = 3

#: Past this many names (C{--presence-list-max}), a room's pages are shown
#: its first names by join order and how many there are, not every name
#: (L{chatthing.backplane.window}): what a page is sent stays bounded
#: whatever the room's size, as Slack or Discord show a big channel's
#: members as a count and a list of some of them.
PRESENCE_LIST_MAX = 250


@dataclass
class _Event:
    """
    One change an alert line tells: C{kind} is C{"joined"}, C{"left"} or
    C{"renamed"} (C{name} the old name, C{new} the new one).
    """

    kind: str
    name: str
    new: str = ""


@dataclass
class PresenceBatch:
    """
    The presence changes of one interval.

    @ivar changes: per case-folded name: the name as shown before the batch
        (L{None}: not shown) and after it (L{None}: gone).
    @ivar events: what the alert lines tell, in order.
    """

    changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events) or bool(self.diff() != ([], []))

    def joined(self, name: str, alert: bool = True) -> None:
        """
        C{name} has joined (its alert line unless C{alert} is false).
        """
        key = name.casefold()
        before = self.changes[key][0] if key in self.changes else None
        self.changes[key] = (before, name)
        if alert:
            self.events.append(_Event("joined", name))

    def left(self, name: str, alert: bool = True) -> None:
        """
        C{name} has left.  If it joined in this batch, the two cancel out in
        the L{diff} (it was never shown), but both alert lines are told, as
        a small room always told them.
        """
        key = name.casefold()
        before = self.changes[key][0] if key in self.changes else name
        self.changes[key] = (before, None)
        if alert:
            self.events.append(_Event("left", name))

    def renamed(self, old: str, new: str) -> None:
        """
        C{old} is now known as C{new}.
        """
        self.left(old, alert=False)
        self.joined(new, alert=False)
        self.events.append(_Event("renamed", old, new))

    def diff(self) -> tuple[list[str], list[str]]:
        """
        The names that joined and the names that left, each sorted as people
        read them: a page removes those that left, then adds those that
        joined.
        """
        joined, left = [], []
        for before, after in self.changes.values():
            if before == after:
                continue
            if before is not None:
                left.append(before)
            if after is not None:
                joined.append(after)
        order: Callable[[str], Any] = lambda name: (name.casefold(), name)
        return sorted(joined, key=order), sorted(left, key=order)


def alertLines(events: list[_Event], threshold: int = ALERT_THRESHOLD) -> list[str]:
    """
    The alert lines that tell C{events}: one per change, as a small room
    has always shown them, unless more than C{threshold} of a kind came in
    the batch: then one line for all of that kind, where its last was (so
    a crowd that joined and then partly left is told in that order).
    """
    byKind: dict[str, list[_Event]] = {}
    for event in events:
        byKind.setdefault(event.kind, []).append(event)
    lines: list[str] = []
    for event in events:
        many = byKind[event.kind]
        if len(many) <= threshold:
            lines.append(_oneLine(event))
        elif event is many[-1]:
            lines.append(_manyLine(event.kind, many))
    return lines


def _oneLine(event: _Event) -> str:
    if event.kind == "joined":
        return f" * user {event.name} has joined the room"
    if event.kind == "left":
        return f" * user {event.name} has left the room"
    return f" * user {event.name} is now known as {event.new}"


#: The line for many joins or leaves in one batch (C{{kind}}: C{joined},
#: C{left}); with C{left} filled in, what the backplane publishes when many
#: users of a dead process leave a room at once (L{chatthing.backplane.Presence.manyLeft}).
MANY_LINE = " * {first}, {second} and {others} others {kind} the room"
MANY_LEFT_LINE = MANY_LINE.replace("{kind}", "left")


def _manyLine(kind: str, events: list[_Event]) -> str:
    if kind == "renamed":
        return f" * {len(events)} users changed their names"
    return MANY_LINE.format(first=events[0].name, second=events[1].name,
                            others=len(events) - 2, kind=kind)


class PresenceThrottle:
    """
    When a room's gathered presence changes go out: a change in a quiet
    room (no batch for C{interval} seconds) goes at once, so a small room
    sees it as it happens; while changes keep coming, at most one batch
    per C{interval} seconds, each carrying every change since the last.
    Whoever publishes anything else on the room's stream L{flush}es first,
    so that a user's join is told before what the user says.

    @ivar publish: called with each L{PresenceBatch} to publish.
    """

    log = Logger()

    def __init__(self, publish: Callable[[PresenceBatch], Any], interval: float = PRESENCE_INTERVAL,
                 reactor: Any = None, pages: Callable[[], int] = lambda: 0) -> None:
        self.publish = publish
        self.interval = interval
        self.pages = pages
        self._reactor = reactor
        self.batch = PresenceBatch()
        self._lastSent: float | None = None
        self._timer: Any = None

    @property
    def reactor(self) -> Any:
        """
        The reactor given, or the global one, looked up when first needed
        (importing this module installs none).
        """
        if self._reactor is None:
            self._reactor = defaultReactor()
        return self._reactor

    def currentInterval(self) -> float:
        """
        The seconds between two batches now: C{interval}, or, in a room of
        more pages than batches every L{PRESENCE_INTERVAL} can reach within
        L{PRESENCE_DELIVERIES_PER_SECOND} (C{pages()}: the room's pages on
        this process, each of which a batch is delivered to), as long as
        they take at that rate.  (Only past that size: a room given a
        shorter C{interval}, as tests do, keeps it.)
        """
        spread = self.pages() / PRESENCE_DELIVERIES_PER_SECOND
        return max(self.interval, spread) if spread > PRESENCE_INTERVAL else self.interval

    def changed(self) -> None:
        """
        The L{batch} has a new change: have it published in time.
        """
        if self._timer is not None:
            return
        now = self.reactor.seconds()
        interval = self.currentInterval()
        if self._lastSent is None or now - self._lastSent >= interval:
            self.flush()
        else:
            self._timer = self.reactor.callLater(self._lastSent + interval - now, self.flush)

    def flush(self) -> None:
        """
        Publish what is gathered now (if anything).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        batch, self.batch = self.batch, PresenceBatch()
        if not batch:
            return
        self._lastSent = self.reactor.seconds()
        try:
            self.publish(batch)
        except Exception:
            self.log.failure("could not publish a presence batch")

    def stop(self) -> None:
        """
        Publish nothing more (the room is closed).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
