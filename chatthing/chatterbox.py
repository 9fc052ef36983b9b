"""
The chat application of the Nevow Athena chat tutorial, on the live runtime.

C{chat} is the element factory to run::

    twistd -n chat-widget --element=chatthing.chatterbox.chat

As in the tutorial, it is the bound C{makeChatter} of one module-level
L{ChatRoom} (C{chat.__self__}), which builds and tracks each page's
L{ChatterElement}: the runtime passes it each page's path, and it makes the
element in the L{Room} that path names (C{/} the lobby, C{/room/NAME}
another room; see L{chatthing.chat.rooms}).  The L{ChatRoom} is the
L{chatthing.live.ILiveApplication} the plugin serves
(C{ILiveApplication(chat) is chat.__self__}): its C{wall} sends global
alerts to every room, and it takes the backplane, room limits and metrics.

The chat itself (rooms, commands, validation, the widget's method names)
is the package L{chatthing.chat}; this module holds the tutorial's three
names and re-exports what its users have imported from here.

Each room's messages go out through a L{chatthing.live.Stream}: each is
encoded once, sent as the same bytes to every page of the room, and
numbered, so a page that reconnects gets what it missed.
"""

from .chat import (
    MAX_MESSAGE_LENGTH,
    MAX_USERNAME_LENGTH,
    AlreadyLoggedIn,
    ChatRoom,
    ChatterElement,
    InvalidMessage,
    InvalidUsername,
    NoSuchRoom,
    NotLoggedIn,
    Room,
    TooManyRooms,
    UnknownCommand,
    UsernameTaken,
    checkMessage,
    normalizeUsername,
)

__all__ = [
    "MAX_MESSAGE_LENGTH", "MAX_USERNAME_LENGTH", "AlreadyLoggedIn", "ChatRoom", "NoSuchRoom",
    "TooManyRooms",
    "ChatterElement", "InvalidMessage", "InvalidUsername", "NotLoggedIn", "Room",
    "UnknownCommand", "UsernameTaken", "chat", "chatRoom", "checkMessage", "normalizeUsername",
]

#: The chat of the server that C{twistd -n chat-widget} runs: every room.
chatRoom = ChatRoom()

# The element factory to run with twistd: one chatter per page, in the room
# its path names.
chat = chatRoom.makeChatter
