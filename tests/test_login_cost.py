"""
What one login costs the server, counted (issue 14, "logging in costs
about what a raw connection costs"): a join storm on a real server on an
ephemeral loopback port, with real WebSocket clients, and counters on
what each login used to repeat.  Counts, not times: the CPU figures are
the bench's (C{chatthing bench --scenarios joinstorm}, docs/performance.md).

The counters wrap the real functions (they count, then call them); the
room's presence timer runs on a L{Clock} (mocks only for time).
"""

import unicodedata
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from conftest import presenceOf, eventually
from test_presence_batch import connectAll, logIn, startRoom
from twisted.internet.task import Clock

from chatthing.chat import names
from chatthing.chat.element import ChatterElement
from chatthing.chat.pages import Pages
from chatthing.chat.presence import PRESENCE_INTERVAL

#: Pages in the storm.
STORM = 150


class Counted:
    """
    How many times each counted thing ran.
    """

    def __init__(self) -> None:
        self.comparisons = 0
        self.categories = 0
        self.skeletons: dict[str, int] = {}


@pytest.fixture
def counted(monkeypatch) -> Counted:
    """
    Counters on a room's comparisons of its pages (C{==} between two
    elements: what asking a list whether it holds a page costs), on the
    Unicode category lookups of the name checks, and on the skeletons
    computed for each name (one per round of L{names.nameKey}).
    """
    counts = Counted()

    def equal(self: Any, other: Any) -> bool:
        counts.comparisons += 1
        return self is other

    monkeypatch.setattr(ChatterElement, "__eq__", equal, raising=False)
    monkeypatch.setattr(ChatterElement, "__hash__", object.__hash__, raising=False)

    def category(char: str) -> str:
        counts.categories += 1
        return unicodedata.category(char)

    monkeypatch.setattr(names, "unicodedata", SimpleNamespace(
        category=category, normalize=unicodedata.normalize, name=unicodedata.name))

    skeleton = names.skeleton

    def countedSkeleton(text: str) -> str:
        counts.skeletons[text] = counts.skeletons.get(text, 0) + 1
        return skeleton(text)

    monkeypatch.setattr(names, "skeleton", countedSkeleton)
    return counts


async def stormOfLogins(serve, prefix: str):
    """
    STORM pages connect to a room and log in as PREFIX000...; once every
    page lists everyone: the room, the pages and the names.
    """
    clock = Clock()
    room, server = await startRoom(serve, clock)
    pages = await connectAll(server, STORM)
    logins = [f"{prefix}{i:03}" for i in range(STORM)]
    await logIn(pages, logins)
    clock.advance(PRESENCE_INTERVAL)
    await eventually(lambda: all(presenceOf(p) == logins for p in pages), "every page to list everyone",
                     deadline=30)
    return room, pages, logins


@pytest_twisted.ensureDeferred
async def test_aLoginDoesNotReadTheRoomsOtherPages(serve, counted):
    """A storm of N logins compares no page with the others (old: each login read the room's list, ~N^2 in all)."""
    room, pages, logins = await stormOfLogins(serve, "reader")
    assert counted.comparisons < STORM, f"{counted.comparisons} comparisons for {STORM} logins"
    for page in pages[: STORM // 2]:
        page.close()
    await eventually(lambda: len(room.chatters) == STORM - STORM // 2, "half the pages to leave")
    assert counted.comparisons < STORM, f"{counted.comparisons} comparisons for {STORM} logins"
    await allLeave(room, pages)


@pytest_twisted.ensureDeferred
async def test_aLoginKeysItsNameOnceAndLooksUpNoCategoryForAnAsciiName(serve, counted):
    """Each login's name is keyed once (old: once when held, again when its join was published) and a printable
    ASCII name needs no Unicode category lookup (old: two or three per character)."""
    room, pages, logins = await stormOfLogins(serve, "keyed")
    # A key's first round is the skeleton of the name case folded.
    firstRounds = [counted.skeletons.get(name.casefold(), 0) for name in logins]
    assert firstRounds == [1] * STORM, firstRounds
    assert counted.categories == 0
    await allLeave(room, pages)


async def allLeave(room, pages) -> None:
    """Close every page and wait until the room has none: a storm's pages
    left closing would be counted by the tests after (test_page_memory)."""
    for page in pages:
        page.close()
    await eventually(lambda: not room.chatters, "every page to leave", deadline=30)


def test_pagesKeepTheirOrderAndCompareAsAList():
    """L{Pages} keeps the order pages were added in, compares equal to the list of them, and refuses to remove a
    page it does not hold, as the list did."""
    pages: Pages[str] = Pages()
    for page in ("a", "b", "c", "b"):
        pages.append(page)
    assert pages == ["a", "b", "c"] and list(pages) == ["a", "b", "c"] and len(pages) == 3
    pages.remove("b")
    assert pages == ["a", "c"] and "b" not in pages and "a" in pages
    pages.discard("z")
    with pytest.raises(ValueError):
        pages.remove("z")
    assert pages != ["c", "a"] and bool(pages) and not Pages()


def test_theServerReadsTheConfusablesAsItStarts():
    """The plugin's service has read the lookalike table before any page comes (old: the first login read it,
    some 15 ms of a join storm's CPU)."""
    from test_tap import parse

    from chatthing import tap

    names._prototypes.cache_clear()
    tap.makeService(parse("--element=chatthing.chatterbox.chat", "--listen", "tcp:0"))
    assert names._prototypes.cache_info().currsize == 1
