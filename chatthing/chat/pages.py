"""
L{Pages}: a room's pages on this process, in the order they came.

A room asks whether a page is still one of its own at every step of a
login (when the page is subscribed, when its name is confirmed, when it
leaves).  In a list each of those questions reads the room's pages one by
one, so a join storm of N pages asked about N²/2 of them: at 5,000 pages
about 40 µs of each login's CPU, and growing with the room (the part of
the cost per connect that was not a line).  Kept in a dict, which keeps
the order they were added in, each question is one lookup, whatever the
room's size.
"""

from typing import Generic, Iterator, TypeVar

Page = TypeVar("Page")


class Pages(Generic[Page]):
    """
    The pages of a room, in the order they were added: a list's few
    operations that a room uses (C{append}, C{remove}, C{in}, C{len},
    iteration), each in constant time.  It compares equal to a list of the
    same pages in the same order, as the list it replaces did.
    """

    __slots__ = ("_pages",)

    def __init__(self) -> None:
        self._pages: dict[Page, None] = {}

    def append(self, page: Page) -> None:
        """
        Add C{page} last (a page already here keeps its place).
        """
        self._pages[page] = None

    def remove(self, page: Page) -> None:
        """
        Forget C{page}.

        @raise ValueError: it is not here (as C{list.remove}).
        """
        try:
            del self._pages[page]
        except KeyError:
            raise ValueError(f"{page!r} is not one of the pages") from None

    def discard(self, page: Page) -> None:
        """
        Forget C{page} if it is here.
        """
        self._pages.pop(page, None)

    def __contains__(self, page: object) -> bool:
        return page in self._pages

    def __len__(self) -> int:
        return len(self._pages)

    def __bool__(self) -> bool:
        return bool(self._pages)

    def __iter__(self) -> Iterator[Page]:
        return iter(self._pages)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Pages):
            return list(self._pages) == list(other._pages)
        if isinstance(other, list):
            return list(self._pages) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Pages({list(self._pages)!r})"
