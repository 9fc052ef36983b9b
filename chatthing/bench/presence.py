"""
How the load generator follows a room's presence list without keeping it:
each page counts the names its view holds, from the frames it receives
(L{chatthing.bench.rawclient.RawPage}), and tells the crowd's L{Presence}
when its count reaches or leaves everyone, so that the join storm
(L{chatthing.bench.storm}) can wait for 20,000 pages by reading one number,
and never holds 20,000 lists of 20,000 names.
"""

import time

#: The presence frames a page follows when asked to (L{Presence}): the
#: whole list (C{updatePresence([names])}, once, when the page opens), one
#: change (C{presenceJoined(name)}, C{presenceLeft(name)}), or the changes
#: of an interval together (C{presenceChanged([joined], [left])}).
PRESENCE_LIST = b'"method":"updatePresence"'
PRESENCE_JOINED = b'"method":"presenceJoined"'
PRESENCE_LEFT = b'"method":"presenceLeft"'
PRESENCE_CHANGED = b'"method":"presenceChanged"'

#: Between two names in a list of names, JSON-encoded: a quote inside a
#: name is escaped, so this cannot appear but between two of them.
NAME_SEPARATOR = b'","'


class Presence:
    """
    How many pages of a crowd see everyone in their presence view: each
    page counts the names in its own (C{RawPage.present}) and tells this
    when its count reaches or leaves C{expected}, so that the load
    generator can wait for the whole crowd by reading one number.
    """

    __slots__ = ("expected", "complete", "lastCompleted")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.complete = 0
        self.lastCompleted = 0.0

    def changed(self, before: int, after: int) -> None:
        if after == self.expected:
            self.complete += 1
            self.lastCompleted = time.monotonic()
        elif before == self.expected:
            self.complete -= 1


def countPresent(payload: bytes, start: int, end: int) -> int:
    """
    How many are in the room by the whole list in C{payload[start:end]}
    (C{updatePresence}'s arguments, from their C{[}): the count that
    follows the names in a big room's list (C{[names, count]}: a window of
    names, L{chatthing.backplane.window}), else the names listed.
    """
    closing = payload.find(b"]", payload.find(b"[", start + 1, end), end)
    if closing >= 0 and payload.startswith(b",", closing + 1):
        tail = payload.find(b"]", closing + 1, end)
        if tail > closing + 2:
            return int(payload[closing + 2:tail])
    return countNames(payload, start, end)


def countNames(payload: bytes, start: int, end: int) -> int:
    """
    How many names the first JSON list of strings in C{payload[start:end]}
    holds, without decoding it: the load generator counts 20,000-name
    lists.  (The load generator's names hold no C{]}.)
    """
    opening = payload.find(b"[", start, end)
    closing = payload.find(b"]", opening, end)
    if opening < 0 or closing < 0 or payload.find(b'"', opening, closing) < 0:
        return 0
    return payload.count(NAME_SEPARATOR, opening, closing) + 1
