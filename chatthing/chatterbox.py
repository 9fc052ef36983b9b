"""
The chat application of the Nevow Athena chat tutorial, on the live runtime.

C{chat} is the element factory to run::

    twistd -n chat-widget --element=chatthing.chatterbox.chat

It makes one L{ChatterElement} per page and registers it with the one
module-level L{ChatRoom}, which keeps the users online in memory, fans every
message out to every page, and sends global alerts.

The room's messages go out through a L{Stream}: each is encoded once, sent
as the same bytes to every page, and numbered, so a page that reconnects
gets what it missed.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .live import CallRefused, LiveElement, Stream, expose

#: Longest username, in characters, after trimming.
MAX_USERNAME_LENGTH = 32

#: Longest chat message, in characters, after trimming.
MAX_MESSAGE_LENGTH = 2000


class InvalidUsername(CallRefused):
    """
    The name is empty, too long, or holds characters that do not print.
    """


class UsernameTaken(CallRefused):
    """
    Someone online already has that name (compared case-insensitively).
    """


class AlreadyLoggedIn(CallRefused):
    """
    This page has already chosen its name.
    """


class NotLoggedIn(CallRefused):
    """
    The page tried to speak before choosing a name.
    """


class InvalidMessage(CallRefused):
    """
    The message is empty, blank, or longer than L{MAX_MESSAGE_LENGTH}.
    """


def normalizeUsername(username: str) -> str:
    """
    C{username} trimmed, if it is a valid name.

    @raise InvalidUsername: saying what is wrong with it.
    """
    name = username.strip()
    if not name:
        raise InvalidUsername("Please choose a username.")
    if len(name) > MAX_USERNAME_LENGTH:
        raise InvalidUsername(
            f"Usernames are at most {MAX_USERNAME_LENGTH} characters long."
        )
    if not name.isprintable():
        raise InvalidUsername("Usernames cannot hold control characters.")
    return name


def checkMessage(text: str) -> str:
    """
    C{text} trimmed, if it can be said.

    @raise InvalidMessage: saying what is wrong with it.
    """
    message = text.strip()
    if not message:
        raise InvalidMessage("Messages cannot be empty.")
    if len(message) > MAX_MESSAGE_LENGTH:
        raise InvalidMessage(
            f"Messages are at most {MAX_MESSAGE_LENGTH} characters long "
            f"(this one has {len(message)})."
        )
    return message


class ChatRoom:
    """
    The room everyone is in: tracks its chatters and who is online, and
    fans messages out to them.

    @ivar chatters: every page's element, in joining order, until the page
        has gone for good.
    @ivar stream: what every page in the room receives.
    """

    log = Logger()

    def __init__(self, name: str = "room", history: int = 1000) -> None:
        self.chatters: list[ChatterElement] = []
        self.stream = Stream(name, history)
        self._online: dict[str, ChatterElement] = {}

    def makeChatter(self) -> "ChatterElement":
        """
        Make the element for a new page and track it until the page goes away.
        """
        chatter = ChatterElement(self)
        self.chatters.append(chatter)
        chatter.notifyOnDisconnect().addCallback(lambda reason: self.leave(chatter))
        return chatter

    def online(self) -> list[str]:
        """
        The names of the users logged in now.
        """
        return [chatter.username for chatter in self._online.values()]

    def login(self, chatter: "ChatterElement", username: str) -> str:
        """
        Give C{chatter} the name C{username} and announce it.

        @return: the name as stored (trimmed).
        @raise InvalidUsername: if the name is not valid.
        @raise UsernameTaken: if someone online has it.
        """
        name = normalizeUsername(username)
        key = name.casefold()
        if key in self._online:
            raise UsernameTaken(f"The name {name!r} is taken; please choose another.")
        self._online[key] = chatter
        chatter.username = name
        self.log.info("{user} joined", user=name)
        self.wall(f" * user {name} has joined the room")
        return name

    def leave(self, chatter: "ChatterElement") -> None:
        """
        Forget C{chatter}; announce its user's leaving if it had logged in.
        """
        if chatter in self.chatters:
            self.chatters.remove(chatter)
        if chatter.username is not None:
            del self._online[chatter.username.casefold()]
            self.log.info("{user} left", user=chatter.username)
            self.wall(f" * user {chatter.username} has left the room")

    def wall(self, message: str) -> int:
        """
        Send the global alert C{message} to every page.

        @return: how many pages it was sent to.
        """
        self.stream.emit("displayMessage", message)
        return len(self.chatters)

    def tellEverybody(self, who: "ChatterElement", what: str) -> None:
        """
        Let every page hear C{who} say C{what}.
        """
        self.stream.emit("displayUserMessage", who.username, what)


class ChatterElement(LiveElement):
    """
    One page in the chat: its user's name, the calls its widget may make,
    and the calls it makes into the widget.
    """

    template = "chatterbox.html"
    jsModule = "/js/ChatThing.js"
    jsClass = "ChatterWidget"

    username: str | None = None
    maxUsernameLength = MAX_USERNAME_LENGTH
    maxMessageLength = MAX_MESSAGE_LENGTH

    def __init__(self, room: ChatRoom) -> None:
        self.room = room

    def __repr__(self) -> str:
        return f"<ChatterElement {self.username or '(not logged in)'}>"

    @expose
    def setUsername(self, username: str) -> str:
        """
        Log in as C{username}; returns the name as stored.
        """
        if self.username is not None:
            raise AlreadyLoggedIn(f"You are already logged in as {self.username}.")
        return self.room.login(self, username)

    @expose
    def say(self, message: str) -> None:
        """
        Say C{message} to everyone in the room.
        """
        if self.username is None:
            raise NotLoggedIn("Choose a username before you speak.")
        self.room.tellEverybody(self, checkMessage(message))

    def connected(self) -> None:
        self.subscribe(self.room.stream)

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


# The element factory to run with twistd: one room, one chatter per page.
chat = ChatRoom().makeChatter
