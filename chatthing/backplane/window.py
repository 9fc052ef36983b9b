"""
A big group's window: past L{chatthing.backplane.Presence.listMax} names,
a group's pages are shown the first C{listMax} names by join order and how
many there are, not every name.

Join order, not alphabetical: a crowd that joins a big room joins at its
end, so the window (those who have been there longest) does not change and
each batch tells a page only the new count.  Every process computes the
window from the group's shared list (a Redis roster in its Lua scripts, the
same rules as here), so that every page of the group shows the same one.
"""

from itertools import islice

from ._base import memberList


def window(members: dict[str, str], listMax: int) -> dict[str, str]:
    """
    The first C{listMax} of C{members} (name key -> name, in join order).
    """
    return dict(islice(members.items(), listMax))


def windowChange(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """
    The names that came into the window and those that went out of it,
    each sorted as people read them (a name whose spelling changed is
    both).
    """
    joined = [name for key, name in after.items() if before.get(key) != name]
    left = [name for key, name in before.items() if after.get(key) != name]
    return memberList(joined), memberList(left)


def changedArgs(joined: list[str], left: list[str], count: int, listMax: int) -> list:
    """
    A change call's arguments: C{[joined, left]} while the group shows
    C{listMax} names or fewer (what a small room has always sent), else
    C{[joined, left, count]}.
    """
    return [joined, left, count] if listMax and count > listMax else [joined, left]
