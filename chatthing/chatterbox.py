"""
The chat application of the Nevow Athena chat tutorial, on the live runtime.

C{chat} is the element factory to run::

    twistd -n chat-widget --element=chatthing.chatterbox.chat

As in the tutorial, it is the bound C{makeChatter} of one module-level
L{ChatRoom} (C{chat.__self__}), which builds and tracks each page's
L{ChatterElement}: the runtime passes it each page's path, and it makes the
element in the L{Room} that path names (C{/} the lobby, C{/room/NAME}
another room; see L{chatthing.rooms}).  The L{ChatRoom} is the
L{chatthing.live.ILiveApplication} the plugin serves
(C{ILiveApplication(chat) is chat.__self__}): its C{wall} sends global
alerts to every room, and it takes the backplane, room limits and metrics.

Each room's messages go out through a L{Stream}: each is encoded once, sent
as the same bytes to every page of the room, and numbered, so a page that
reconnects gets what it missed.
"""

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from . import commands
from .live import LiveElement, expose
from .lobby import ChatRoom, NoSuchRoom, TooManyRooms
from .rooms import Room
from .validation import (
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
)

__all__ = [
    "MAX_MESSAGE_LENGTH", "MAX_USERNAME_LENGTH", "AlreadyLoggedIn", "ChatRoom", "NoSuchRoom",
    "TooManyRooms",
    "ChatterElement", "InvalidMessage", "InvalidUsername", "NotLoggedIn", "Room",
    "UnknownCommand", "UsernameTaken", "chat", "chatRoom", "checkMessage", "normalizeUsername",
]


class ChatterElement(LiveElement):
    """
    One page in the chat: its user's name, the calls its widget may make,
    and the calls it makes into the widget.
    """

    template = "chatterbox.html"
    jsModule = "/js/ChatThing.js"
    jsClass = "ChatterWidget"

    username: str | None = None
    lastTyping: float | None = None
    maxUsernameLength = MAX_USERNAME_LENGTH
    maxMessageLength = MAX_MESSAGE_LENGTH

    def __init__(self, room: Room) -> None:
        self.room = room

    def __repr__(self) -> str:
        return f"<ChatterElement {self.username or '(not logged in)'} in {self.room.name}>"

    @expose
    def setUsername(self, username: str) -> Deferred | str:
        """
        Log in as C{username}; returns the name as stored.
        """
        if self.username is not None:
            if username.strip() == self.username:
                # The same call again (its page sent it again after moving
                # to this process): the same answer.
                return self.username
            raise AlreadyLoggedIn(f"You are already logged in as {self.username}.")
        return self.room.login(self, username)

    @expose
    def say(self, message: str) -> Deferred | None:
        """
        Say C{message} to everyone in the room, or run the slash command it
        is (see L{chatthing.commands}); returns the new name for C{/nick},
        else nothing.
        """
        if self.username is None:
            raise NotLoggedIn("Choose a username before you speak.")
        return commands.run(self, message)

    @expose
    def typing(self) -> None:
        """
        The user is typing: tell the others in the room (at most once per
        C{room.typingInterval} seconds; more are ignored).
        """
        if self.username is None:
            raise NotLoggedIn("Choose a username before you speak.")
        self.room.typing(self)

    def connected(self) -> None:
        self.room.welcome(self)

    def disconnected(self, reason: Failure) -> None:
        self.room.leave(self, reason.value)

    def sessionState(self) -> dict:
        """
        What another process needs to carry on this page: who is logged in.
        """
        return {"username": self.username}

    def restore(self, state: dict) -> None:
        username = state.get("username") if isinstance(state, dict) else None
        self.room.restore(self, username if isinstance(username, str) else None)

    def wall(self, message: str) -> Deferred:
        """
        Show the alert C{message} on this page only.
        """
        return self.callRemote("displayMessage", message)

    def hear(self, username: str, what: str) -> Deferred:
        """
        Show on this page only that C{username} said C{what}.
        """
        return self.callRemote("displayUserMessage", username, what)

    def tell(self, message: str) -> None:
        """
        Show C{message} on this page only (one-way: the page does not answer).
        """
        self.notifyRemote("displayMessage", message)


#: The chat of the server that C{twistd -n chat-widget} runs: every room.
chatRoom = ChatRoom()

# The element factory to run with twistd: one chatter per page, in the room
# its path names.
chat = chatRoom.makeChatter
