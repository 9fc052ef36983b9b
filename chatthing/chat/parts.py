"""
What the chat's parts need of each other, as small L{Protocol}s, so that
each module imports only those below it:

    element (ChatterElement) -> commands -> parts
    chatroom (ChatRoom) -> rooms (Room) -> element

A L{Room} makes each page's element, and the element and the slash
commands reach their room only through L{ChatterRoom}; the room reaches
its pages only through L{Chatter}.  Nothing here imports the others, even
for type checking (C{tests/test_chat_layout.py} holds to that).
"""

from typing import Any, Protocol

from twisted.internet.defer import Deferred


class Chatter(Protocol):
    """
    One page in a room, as the room and the commands see it: its user's
    name, and the calls into its widget they make.
    """

    username: str | None
    lastTyping: float | None

    @property
    def room(self) -> "ChatterRoom":
        """The room the page is in."""

    def notifyRemote(self, methodName: str, *args: Any) -> None:
        """Call the page's widget, expecting no answer."""

    def notifyRemoteEncoded(self, methodName: str, argsJSON: bytes) -> None:
        """Call the page's widget with arguments encoded already (once for many pages)."""

    def subscribe(self, stream: Any) -> None:
        """Send the page what C{stream} carries from now on."""

    def sessionStateChanged(self) -> None:
        """What the page's session carries (its username) has changed."""

    def tell(self, message: str) -> None:
        """Show C{message} on this page only."""


class ChatterRoom(Protocol):
    """
    A room, as its pages and the slash commands see it.
    """

    @property
    def name(self) -> str:
        """The room's name (lower case)."""

    def login(self, chatter: Chatter, username: str) -> Deferred:
        """Give C{chatter} the name C{username} and announce it."""

    def rename(self, chatter: Chatter, username: str) -> Deferred:
        """Change C{chatter}'s name to C{username} and announce it."""

    def restore(self, chatter: Chatter, username: str | None) -> None:
        """C{chatter}'s session has come here from another process."""

    def welcome(self, chatter: Chatter) -> None:
        """C{chatter}'s page has connected."""

    def leave(self, chatter: Chatter, reason: BaseException | None = None) -> None:
        """C{chatter}'s page has gone."""

    def tellEverybody(self, who: Chatter, what: str) -> Deferred | None:
        """Let the room hear C{who} say C{what}."""

    def act(self, who: Chatter, what: str) -> Deferred | None:
        """Show the room that C{who} does C{what}."""

    def typing(self, who: Chatter) -> bool:
        """C{who} is typing."""

    def presence(self) -> list[str]:
        """Who is in the room, on every process (past C{--presence-list-max}, its window)."""

    def presenceCount(self) -> int:
        """How many are in the room, on every process."""

    def lookup(self, name: str) -> Deferred:
        """Whether C{name} is in the room: the name as spelt there, or L{None}."""
