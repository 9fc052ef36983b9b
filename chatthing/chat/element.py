"""
L{ChatterElement}: one page in the chat.  C{chatthing.chatterbox} exports
it (the tutorial's module); it is defined here so that a L{chatthing.chat.rooms.Room}
can make it without importing C{chatterbox}.
"""

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ..live import LiveElement, expose
from . import commands, widget
from .parts import ChatterRoom
from .validation import MAX_MESSAGE_LENGTH, MAX_USERNAME_LENGTH, AlreadyLoggedIn, NotLoggedIn

#: What each page of a stopping process is told, just before it moves.
RESTART_ALERT = "The server is restarting. You will be reconnected."


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

    def __init__(self, room: ChatterRoom) -> None:
        self._room = room

    @property
    def room(self) -> ChatterRoom:
        """
        The room the page is in (the one its path names).
        """
        return self._room

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
        is (see L{chatthing.chat.commands}); returns the new name for
        C{/nick}, else nothing.
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

    def goingAway(self) -> None:
        """
        This process is stopping: tell this page (only), before its
        connection closes with 1012 and it reconnects.
        """
        self.tell(RESTART_ALERT)

    def tell(self, message: str) -> None:
        """
        Show C{message} on this page only (one-way: the page does not
        answer; replayed if the page resumes), as C{/who} and C{/help}
        answer.
        """
        self.notifyRemote(widget.DISPLAY_MESSAGE, message)
