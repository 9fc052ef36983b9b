"""
L{MemoryBackplane}: the backplane of a server that runs alone.
"""

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed

from ..live import LocalSessions, PassingStream, Stream
from ._base import Call, NameTaken, Presence, memberList



class MemoryRoster:
    """
    The names held in this process.
    """

    def __init__(self, presence: Presence = Presence()) -> None:
        self.presence = presence
        self._holders: dict[str, Any] = {}
        self._held: dict[Any, tuple[str, str, Stream]] = {}
        self._groups: dict[str, dict[str, str]] = {}

    def usePresence(self, presence: Presence) -> None:
        self.presence = presence

    def hold(self, holder: Any, name: str, group: str, stream: Stream,
             announce: list[Call], onLeave: list[Call]) -> Deferred:
        key = self.presence.nameKey(name)
        current = self._holders.get(key)
        if current is not None and current is not holder:
            return fail(NameTaken(f"the name {name!r} is taken"))
        old = self._letGo(holder)
        self._holders[key] = holder
        self._held[holder] = (name, group, stream)
        self._groups.setdefault(group, {})[key] = name
        left = [(self.presence.left, [old[0]])] if old is not None else []
        stream.publish([*announce, *left, (self.presence.joined, [name])])
        return succeed(None)

    def members(self, group: str, stream: Stream) -> Deferred:
        return succeed((memberList(self._groups.get(group, {}).values()), stream.offset))

    def restore(self, holder: Any, name: str, group: str, stream: Stream,
                onLeave: list[Call]) -> None:
        self._letGo(holder)
        key = self.presence.nameKey(name)
        self._holders[key] = holder
        self._held[holder] = (name, group, stream)
        self._groups.setdefault(group, {})[key] = name

    def release(self, holder: Any, announce: list[Call]) -> Deferred:
        held = self._letGo(holder)
        if held is not None:
            name, group, stream = held
            stream.publish([*announce, (self.presence.left, [name])])
        return succeed(None)

    def _letGo(self, holder: Any) -> tuple[str, str, Stream] | None:
        held = self._held.pop(holder, None)
        if held is not None:
            name, group, _ = held
            key = self.presence.nameKey(name)
            self._holders.pop(key, None)
            self._groups.get(group, {}).pop(key, None)
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
