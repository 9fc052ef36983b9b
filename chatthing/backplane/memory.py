"""
L{MemoryBackplane}: the backplane of a server that runs alone.
"""

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed

from ..live import LocalSessions, PassingStream, Stream
from ._base import Call, NameTaken, Presence, memberList
from .window import changedArgs, window, windowChange


class MemoryRoster:
    """
    The names held in this process, and who each group shows (as the
    batches published with L{publishChanges} left it).
    """

    def __init__(self, presence: Presence = Presence()) -> None:
        self.presence = presence
        self._holders: dict[str, Any] = {}
        self._held: dict[Any, tuple[str, str, Stream]] = {}
        self._groups: dict[str, dict[str, str]] = {}

    def usePresence(self, presence: Presence) -> None:
        self.presence = presence

    def hold(self, holder: Any, name: str, group: str, stream: Stream,
             onLeave: list[Call]) -> Deferred:
        key = self.presence.nameKey(name)
        current = self._holders.get(key)
        if current is not None and current is not holder:
            return fail(NameTaken(f"the name {name!r} is taken"))
        self._letGo(holder)
        self._holders[key] = holder
        self._held[holder] = (name, group, stream)
        return succeed(None)

    def confirm(self, holder: Any) -> Deferred:
        # Nothing outlives this process: nothing to wait for.
        return succeed(None)

    def publishChanges(self, group: str, stream: Stream, calls: list[Call],
                       joined: list[str], left: list[str]) -> Deferred | None:
        # In join order (a dict keeps it): the window is its first names.
        shown = self._groups.setdefault(group, {})
        listMax, countBefore = self.presence.listMax, len(shown)
        before = window(shown, listMax)
        left = [name for name in left if not self._holds(name, group)]
        for name in left:
            key = self.presence.nameKey(name)
            if shown.get(key) == name:
                del shown[key]
        for name in joined:
            shown[self.presence.nameKey(name)] = name
        count = len(shown)
        if not shown:
            del self._groups[group]
        if listMax and max(count, countBefore) > listMax:
            joined, left = windowChange(before, window(shown, listMax))
            if not (calls or joined or left or count != countBefore):
                return None
        change = (self.presence.changed, changedArgs(joined, left, count, listMax))
        return stream.publish([*calls, change])

    def members(self, group: str, stream: Stream) -> Deferred:
        shown, listMax = self._groups.get(group, {}), self.presence.listMax
        if listMax and len(shown) > listMax:
            return succeed((memberList(window(shown, listMax).values()), stream.offset, len(shown)))
        return succeed((memberList(shown.values()), stream.offset))

    def restoreGroup(self, group: str, names: list[str]) -> None:
        if names and not self._groups.get(group):
            self._groups[group] = {self.presence.nameKey(name): name for name in names}

    def lookup(self, group: str, name: str) -> Deferred:
        return succeed(self._groups.get(group, {}).get(self.presence.nameKey(name)))

    def restore(self, holder: Any, name: str, group: str, stream: Stream,
                onLeave: list[Call]) -> None:
        self._letGo(holder)
        key = self.presence.nameKey(name)
        self._holders[key] = holder
        self._held[holder] = (name, group, stream)

    def release(self, holder: Any) -> Deferred:
        self._letGo(holder)
        return succeed(None)

    def _holds(self, name: str, group: str) -> bool:
        """
        Whether someone holds exactly C{name} in C{group} now.
        """
        holder = self._holders.get(self.presence.nameKey(name))
        return holder is not None and self._held[holder][:2] == (name, group)

    def _letGo(self, holder: Any) -> tuple[str, str, Stream] | None:
        held = self._held.pop(holder, None)
        if held is not None:
            self._holders.pop(self.presence.nameKey(held[0]), None)
        return held


class MemoryBackplane(Service):
    """
    Streams, roster and sessions in this process's memory: nothing is
    shared, nothing can fail.
    """

    def __init__(self, presence: Presence = Presence()) -> None:
        # Twisted declares Service.name as None at class level, so it is
        # named the way Twisted names services.
        self.setName("backplane")
        self.roster = MemoryRoster(presence)
        self.sessions = LocalSessions()

    def stream(self, key: str, name: str, history: int) -> Stream:
        return Stream(name, history)

    def passingStream(self, key: str, name: str) -> Stream:
        return PassingStream(name)

    def problem(self) -> str | None:
        return None

    def onStatusChange(self, listener: Callable[[bool], None]) -> None:
        pass
