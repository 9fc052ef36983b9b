"""
The chat application: rooms, the server-wide L{ChatRoom} that holds them,
slash commands, what a page may send (validation, names), what the rooms
may hold (L{RoomMemory}), and the chat widget's method names
(L{chatthing.chat.widget}).

It sits on the two layers below it and imports only their public faces:
L{chatthing.live} (the runtime) and L{chatthing.backplane} (what carries
rooms between processes).  C{chatthing.chatterbox} is the tutorial's
module on top of it: its module-level L{ChatRoom} and its C{chat}, the
element factory twistd serves.

Inside, the arrows go one way (C{tests/test_chat_layout.py}): L{ChatRoom}
(C{chatroom}) makes L{Room}s (C{rooms}), which make L{ChatterElement}s
(C{element}), which run L{commands}; the element and the commands reach
their room, and the room its pages, through the small protocols of
L{chatthing.chat.parts}.
"""

from . import commands, widget
from .chatroom import ALERT_HISTORY, MAX_ROOMS, ChatRoom, NoSuchRoom, TooManyRooms
from .element import RESTART_ALERT, ChatterElement
from .parts import Chatter, ChatterRoom
from .roommemory import History, RoomBytes, RoomMemory
from .rooms import DEFAULT_HISTORY, STREAM_HISTORY, TYPING_INTERVAL, Room
from .said import Said
from .state import ChatState
from .validation import (
    LOBBY,
    MAX_MESSAGE_LENGTH,
    MAX_USERNAME_LENGTH,
    AlreadyLoggedIn,
    InvalidMessage,
    InvalidUsername,
    NotLoggedIn,
    UnknownCommand,
    UsernameTaken,
    checkMessage,
    normalizeUsername,
    roomForPath,
)

__all__ = [
    "ALERT_HISTORY", "DEFAULT_HISTORY", "LOBBY", "MAX_MESSAGE_LENGTH", "MAX_ROOMS",
    "MAX_USERNAME_LENGTH", "RESTART_ALERT", "STREAM_HISTORY", "TYPING_INTERVAL",
    "AlreadyLoggedIn", "ChatRoom", "Chatter", "ChatterElement", "ChatterRoom", "History",
    "InvalidMessage", "InvalidUsername", "NoSuchRoom", "NotLoggedIn", "Room",
    "RoomBytes", "RoomMemory", "Said", "TooManyRooms", "UnknownCommand", "UsernameTaken",
    "checkMessage", "commands", "normalizeUsername", "roomForPath", "widget",
    "ChatState",
]
