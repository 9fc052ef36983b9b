"""
The chat's part of a state file (C{--state-file}, L{chatthing.live.StateKeeper}):
what a L{ChatRoom} carries across a restart of a process that runs alone
besides its pages' sessions: each room's stream (its offset and the frames
kept for pages that resume), its history, who is in it, and the global
alerts' stream.  The names themselves are held again by the sessions as
their pages' elements are restored (L{Room.restore}), without announcing
anything; a name whose page does not come back within the grace period
leaves as usual.

Registered as the adapter from L{ChatRoom} to L{IAppState}, so that the
plugin asks the application for it through the interface.
"""

from typing import Any

from twisted.python.components import registerAdapter
from zope.interface import implementer

from ..live import IAppState
from .chatroom import ChatRoom
from .said import ACTION, MESSAGE, Said


@implementer(IAppState)
class ChatState:
    """
    Saves and restores the rooms of C{chatRoom}.
    """

    def __init__(self, chatRoom: ChatRoom) -> None:
        self.chatRoom = chatRoom

    def saveState(self) -> dict[str, Any]:
        return {"alerts": self.chatRoom.alerts.savedState(),
                "rooms": [room.savedState() for room in self.chatRoom.rooms.values()]}

    def loadState(self, state: Any) -> None:
        """
        Open the saved rooms again as they were; everything is checked
        before anything is taken up.

        @raise ValueError: if C{state} is not what L{saveState} gives.
        """
        if not isinstance(state, dict) or not isinstance(state.get("rooms"), list):
            raise ValueError("the chat's state holds no list of rooms")
        rooms = [_room(entry) for entry in state["rooms"]]
        if len(rooms) > self.chatRoom.maxRooms:
            raise ValueError(f"it holds {len(rooms)} rooms, more than the {self.chatRoom.maxRooms} allowed")
        alerts = state.get("alerts")
        if not isinstance(alerts, dict):
            raise ValueError("the chat's state holds no alerts stream")
        self.chatRoom.alerts.restoreState(alerts)
        for name, stream, history, presence, lastStamp in rooms:
            self.chatRoom.room(name).restoreState(stream, history, presence, lastStamp)


def _room(entry: Any) -> tuple[str, dict, list[Said], list[str], int]:
    """
    A saved room's fields, checked.

    @raise ValueError: if it is not as L{Room.savedState} gives it.
    """
    if not isinstance(entry, dict):
        raise ValueError("a saved room is not an object")
    name, stream, lines = entry.get("name"), entry.get("stream"), entry.get("history")
    presence, lastStamp = entry.get("presence"), entry.get("lastStamp")
    if not (isinstance(name, str) and isinstance(stream, dict) and isinstance(lines, list)
            and isinstance(presence, list) and all(isinstance(who, str) for who in presence)
            and type(lastStamp) is int):
        raise ValueError(f"the saved room {str(name)[:40]!r} is not as a room saves itself")
    history = []
    for line in lines:
        if not (isinstance(line, list) and len(line) == 4 and line[0] in (MESSAGE, ACTION)
                and isinstance(line[1], str) and isinstance(line[2], str) and type(line[3]) is int):
            raise ValueError(f"a line of the history of {name[:40]!r} is not a history entry")
        history.append(Said(line[0], line[1], line[2], line[3]))
    return name, stream, history, presence, lastStamp


registerAdapter(ChatState, ChatRoom, IAppState)
