"""
L{BoundedLog}: the last entries of something, oldest first, bounded in
count and in bytes.

A stream keeps its last frames for the pages that resume (L{Stream}), and
a chat room its last messages for newcomers: each is a log that forgets
its oldest entries once it holds too many of them or too many bytes.
Everything a client can make the server hold needs such a bound, and one
loop that keeps it (counted the same way, trimmed in the same order) is
easier to trust than one per layer.  It lives in the runtime so that the
applications above it can use it too.
"""

from typing import Callable, Generic, Iterator, TypeVar

E = TypeVar("E")


class BoundedLog(Generic[E]):
    """
    Entries, oldest first: at most C{maxCount} of them and, unless
    C{maxBytes} is L{None}, at most C{maxBytes} of their sizes.  Past
    either bound the oldest go first; an entry bigger than the whole byte
    bound is let go as soon as it comes, and takes every older one with it.

    The size of an entry is C{sizeOf(entry)}, asked when it comes and again
    when it goes, so it must not change meanwhile (an entry whose size is
    costly to work out carries it: C{sizeOf} reads it back).

    @ivar maxCount: the most entries kept.
    @ivar maxBytes: the most bytes kept (L{None}: only C{maxCount} bounds
        them); a new value (or C{maxCount}) holds from the next L{append}.
    @ivar heldBytes: the sum of the sizes of the entries kept.
    """

    # Every stream keeps one, and an application may give each page a
    # stream of its own that holds a frame or two: no instance dictionary,
    # and a list rather than a deque, which allocates a block of 64 entries
    # however few it holds.
    __slots__ = ("maxCount", "maxBytes", "heldBytes", "_sizeOf", "_entries")

    def __init__(self, sizeOf: Callable[[E], int], maxCount: int,
                 maxBytes: int | None = None) -> None:
        self.maxCount = maxCount
        self.maxBytes = maxBytes
        self.heldBytes = 0
        self._sizeOf = sizeOf
        self._entries: list[E] = []

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {len(self._entries)} of {self.maxCount} entries,"
                f" {self.heldBytes} of {self.maxBytes} bytes>")

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries)

    def __getitem__(self, index: int) -> E:
        return self._entries[index]

    def append(self, entry: E) -> E | None:
        """
        Keep C{entry} as the newest, and forget the oldest entries while
        either bound is passed.

        @return: the newest of the entries forgotten (C{entry} itself if it
            alone is bigger than the byte bound), L{None} if none were, so
            that a log of numbered entries knows from where it is complete.
        """
        entries = self._entries
        entries.append(entry)
        self.heldBytes += self._sizeOf(entry)
        maxBytes = self.maxBytes
        if len(entries) > self.maxCount or (maxBytes is not None and self.heldBytes > maxBytes):
            return self.trim(maxBytes)
        return None

    def trim(self, maxBytes: int | None) -> E | None:
        """
        Forget the oldest entries until at most C{maxBytes} of them (and
        at most L{maxCount}) are kept: to make room elsewhere, or C{0} to
        let go of them all.  L{maxBytes} stays as it is.

        @return: the newest of the entries forgotten, L{None} if none were.
        """
        entries, sizeOf, maxCount = self._entries, self._sizeOf, self.maxCount
        held, count, drop = self.heldBytes, len(entries), 0
        while drop < count and (count - drop > maxCount
                                or (maxBytes is not None and held > maxBytes)):
            held -= sizeOf(entries[drop])
            drop += 1
        if not drop:
            return None
        newest = entries[drop - 1]
        # One move of what is kept, however many go.
        del entries[:drop]
        self.heldBytes = held
        return newest
