"""
L{PresenceList}: who a room shows, kept from the batches its stream
delivers (C{presenceChanged}), the same in every process.

A process that opens a room reads who is there from the backplane (a
snapshot, true at one offset of the room's stream) while the stream may
already be delivering batches: the list is the snapshot with the batches
after its offset, and a batch applied twice changes nothing, so the order
in which the two arrive does not matter.

In a room of more than C{--presence-list-max} names the list is the room's
window (its first names by join order, L{chatthing.backplane.window}) and
the batches carry the room's count, so what a page is sent is bounded
whatever the room's size; L{count} is then that count, not the list's
length.
"""

from collections import deque

from markupsafe import Markup, escape

from ..backplane import memberList
from ..live import encodeArgs


class PresenceList:
    """
    The names a room shows, by case-folded name.

    @ivar started: whether the snapshot has come (until then, batches are
        kept with their offsets, to apply after it).
    """

    def __init__(self, keep: int) -> None:
        self.started = False
        self._names: dict[str, str] = {}
        self._count: int | None = None
        self._early: deque[tuple[int, list]] = deque(maxlen=keep)
        self._encoded: bytes | None = None
        self._sorted: list[str] | None = None
        self._html: Markup | None = None

    def names(self) -> list[str]:
        """
        The names, sorted as people read them (sorted once per change of
        the list: every page drawn shows them).
        """
        if self._sorted is None:
            self._sorted = memberList(self._names.values())
        return list(self._sorted)

    def count(self) -> int:
        """
        How many names the room shows: those listed, or, past the window's
        size, the count the last batch told.
        """
        return len(self._names) if self._count is None else self._count

    def more(self) -> int:
        """
        How many of the room's names are not listed (outside its window).
        """
        return self.count() - len(self._names)

    def html(self) -> Markup:
        """
        The names as the page's list items (C{<li>}, escaped), made once
        per change of the list: a crowd of browsers opening the room would
        otherwise have the template loop over every name for every page,
        a cost that grows as the square of the crowd.
        """
        if self._html is None:
            self._html = Markup("").join(Markup("<li>{}</li>").format(escape(name))
                                         for name in self.names())
        return self._html

    def shows(self, name: str) -> bool:
        """
        Whether C{name} is listed, spelt so.
        """
        return self._names.get(name.casefold()) == name

    def encoded(self) -> bytes:
        """
        C{updatePresence}'s arguments, C{[names]} (past the window's size
        C{[names, count]}), encoded once per change of the list, however
        many pages are sent it meanwhile.
        """
        if self._encoded is None:
            args: list = [self.names()] if self._count is None else [self.names(), self._count]
            self._encoded = encodeArgs(args)
        return self._encoded

    def heard(self, offset: int, args: list) -> None:
        """
        The room's stream delivered C{presenceChanged(*args)} at C{offset}
        (anything else with that name is ignored).
        """
        if not _changeArgs(args):
            return
        if not self.started:
            self._early.append((offset, args))
        self._change(args)

    def start(self, names: list[str], offset: int, count: int | None = None) -> None:
        """
        Who was in the room at C{offset} of its stream (read from the
        backplane when the room opened here; past the window's size, the
        window, and C{count} how many were there): the list is that, with
        the batches after it.
        """
        self._names = {name.casefold(): name for name in names}
        self._count = count if count is not None and count > len(names) else None
        self._encoded = self._sorted = self._html = None
        for at, args in self._early:
            if at > offset:
                self._change(args)
        # Needed only until now.
        self.started = True
        self._early.clear()

    def _change(self, args: list) -> None:
        """
        Apply one batch, C{[joined, left]} or C{[joined, left, count]}:
        those who left go, then those who joined come, and the count is
        the batch's (idempotent, so a batch a snapshot has seen already
        changes nothing).
        """
        joined, left = args[0], args[1]
        for name in left:
            if self.shows(name):
                del self._names[name.casefold()]
        for name in joined:
            self._names[name.casefold()] = name
        self._count = args[2] if len(args) == 3 else None
        self._encoded = self._sorted = self._html = None


def _changeArgs(args: list) -> bool:
    """
    Whether C{args} are C{presenceChanged}'s: two lists of names, and
    past the window's size the room's count.
    """
    return (len(args) in (2, 3) and all(isinstance(names, list) for names in args[:2])
            and all(isinstance(name, str) for names in args[:2] for name in names)
            and (len(args) == 2 or (isinstance(args[2], int) and not isinstance(args[2], bool))))
