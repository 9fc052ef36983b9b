"""
A Python client for the chat, on Twisted: for bots and other programs.

    from twisted.internet.task import react
    from chatthing.client import ChatClient

    async def main(reactor):
        def heard(username, text):
            print(f"{username}: {text}")

        client = await ChatClient.connect("ws://127.0.0.1:8080/live", "robot", onMessage=heard)
        await client.say("hello, everyone")
        ...
        await client.close()

    react(lambda reactor: defer.ensureDeferred(main(reactor)))

L{ChatClient.connect} logs in; what the room says comes to the callbacks
C{onMessage(username, text)} and C{onAlert(text)} (joins, leaves, operator
alerts), and any other widget method the chat calls goes to
C{onCall(method, args)}.  Pass them to C{connect}, or subclass and override
them.  When the connection drops, the client reconnects by itself (back-off
with jitter) and resumes its session, so it misses nothing and hears nothing
twice; if the session has expired it logs in again under the same name.

From asyncio: install Twisted's asyncio reactor first
(C{twisted.internet.asyncioreactor.install()}), then in a coroutine
C{client = await ChatClient.connect(...).asFuture(loop)}, and the same for
C{say} and C{close}: every method returns a L{Deferred}.

The client speaks the live protocol through L{chatthing.live.client.LiveClient};
C{docs/protocol.md} documents it, for clients in other languages.
"""

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .chat import widget
from .live import RemoteError
from .live.client import Backoff, ConnectionLost, LiveClient, State

__all__ = ["ChatClient", "ConnectionLost", "RemoteError", "pagePath"]


def pagePath(room: str | None) -> str:
    """
    The page path that shows C{room}: C{/} for the default room,
    C{/room/NAME} for another.
    """
    if room is None:
        return "/"
    return "/room/" + quote(room, safe="")


class ChatClient:
    """
    One user in the chat, logged in, across reconnections.

    @ivar username: the name as the server stored it (trimmed).
    @ivar room: the room joined, or L{None} for the default one.
    @ivar live: the L{LiveClient} underneath.
    @ivar presence: who is in the room, sorted as people read them, as the
        server last said (L{None} before it has); kept before C{onCall}
        hears C{updatePresence} or C{presenceChanged}.  Past the server's
        C{--presence-list-max}, the room's window of names only.
    @ivar presenceCount: how many are in the room (L{None} before the
        server has said): the length of L{presence}, or the room's count
        the server tells with a window.
    """

    log = Logger()

    def __init__(
        self, url: str, username: str, room: str | None = None, *,
        onMessage: Callable[[str, str], Any] | None = None,
        onAlert: Callable[[str], Any] | None = None,
        onCall: Callable[[str, list], Any] | None = None,
        reactor: Any = None, backoff: Backoff | None = None,
    ) -> None:
        """
        Make a client that is not yet connected; L{connect} is the usual way in.
        """
        self.username = username
        self.room = room
        # What the methods below call, unless a subclass overrides them.
        self._onMessage, self._onAlert, self._onCall = onMessage, onAlert, onCall
        self.live = LiveClient(url, self._dispatch, page=pagePath(room), reactor=reactor,
                               backoff=backoff)
        self.live.onWelcome(self._welcomed)
        self._loggedIn = False
        # While logging in again after a new session: what was said
        # meanwhile waits, to be said once logged in (never before).
        self._relogging: list[tuple[str, Deferred]] | None = None
        self.presence: list[str] | None = None
        self.presenceCount: int | None = None

    @classmethod
    def connect(cls, url: str, username: str, room: str | None = None,
                **kwargs: Any) -> Deferred:
        """
        Connect to the chat at C{url} (C{ws://host:port/live}) and log in
        as C{username}, in C{room} if given.  Keyword arguments are
        L{ChatClient}'s (C{onMessage}, C{onAlert}, C{onCall}, C{reactor}, ...).

        @return: a L{Deferred} firing with the logged-in L{ChatClient}, or
            failing with L{ConnectionError} (no server) or L{RemoteError}
            (C{error.name} is C{"UsernameTaken"}, C{"InvalidUsername"}, ...).
        """
        client = cls(url, username, room, **kwargs)
        return ensureDeferred(client._start())

    async def _start(self) -> "ChatClient":
        await self.live.connect()
        try:
            await self._login()
        except Exception:
            await self.live.close()
            raise
        return self

    async def _login(self) -> None:
        self.username = await self.live.callRemote("setUsername", self.username)
        self._loggedIn = True

    def _welcomed(self, welcome: dict[str, Any]) -> None:
        if not self._loggedIn:
            return  # the first session: _start logs in
        # The server could not resume our session (it restarted, or we were
        # away too long): log in again under the same name.
        self.log.info("{client}: session expired ({why}); logging in again",
                      client=self, why=welcome.get("expired"))
        if self._relogging is None:
            self._relogging = []
        ensureDeferred(self._login()).addBoth(self._loggedInAgain)

    def _loggedInAgain(self, result: Any) -> None:
        """
        The new session's login is done (C{result}, a failure if it was
        refused): say what waited for it, in order, or fail it saying why.
        """
        waiting, self._relogging = self._relogging or [], None
        if isinstance(result, Failure):
            self.log.failure("{client}: could not log in again", result, client=self)
            error = ConnectionLost(f"not said: could not log in again as {self.username!r}: "
                                   f"{result.getErrorMessage()}")
            for _, d in waiting:
                d.errback(error)
            return
        for text, d in waiting:
            self.live.callRemote("say", text).chainDeferred(d)

    def __repr__(self) -> str:
        return f"<ChatClient {self.username!r} {self.live.state}>"

    @property
    def connected(self) -> bool:
        """
        Whether the connection is up now (it may be reconnecting).
        """
        return self.live.state == State.CONNECTED

    def say(self, text: str) -> Deferred:
        """
        Say C{text} to the room.  While the connection is down it waits,
        and is said once when the session resumes; while the client logs
        in again (its session could not be resumed) it waits for that, and
        is said only once logged in (or fails with L{ConnectionLost} if the
        name cannot be had again).

        @return: a L{Deferred} firing with L{None} once the server has taken
            it, or failing with L{RemoteError} (C{"InvalidMessage"}, ...) or
            L{ConnectionLost}.
        """
        if self._relogging is not None:
            d: Deferred = Deferred()
            self._relogging.append((text, d))
            return d
        return self.live.callRemote("say", text)

    def close(self) -> Deferred:
        """
        Leave the chat: the others see the leave at once.

        @return: a L{Deferred} firing once the connection has closed.
        """
        return self.live.close()

    # Callbacks: override these, or pass them to connect().

    def onMessage(self, username: str, text: str) -> Any:
        """
        C{username} said C{text} (this client's own messages included).
        """
        if self._onMessage is not None:
            return self._onMessage(username, text)
        return None

    def onAlert(self, text: str) -> Any:
        """
        An alert: someone joined or left, or the operator's global alert.
        """
        if self._onAlert is not None:
            return self._onAlert(text)
        return None

    def onCall(self, method: str, args: list) -> Any:
        """
        Any other widget method the chat calls; the return value is the
        answer when the server waits for one.
        """
        if self._onCall is not None:
            return self._onCall(method, args)
        return None

    def _dispatch(self, method: str, args: list) -> Any:
        if method == widget.DISPLAY_USER_MESSAGE and len(args) == 2:
            return self.onMessage(*args)
        if method == widget.DISPLAY_MESSAGE and len(args) == 1:
            return self.onAlert(*args)
        if method in (widget.UPDATE_PRESENCE, widget.PRESENCE_CHANGED):
            self._changePresence(method, args)
        return self.onCall(method, args)

    def _changePresence(self, method: str, args: list) -> None:
        """
        Keep L{presence}: a whole list, or a batch of changes (those who
        left go, then those who joined come, a name replacing one that
        differs only in case), as the page does.
        """
        if method == widget.UPDATE_PRESENCE and len(args) in (1, 2):
            shown = {name.casefold(): name for name in args[0]}
        elif method == widget.PRESENCE_CHANGED and len(args) in (2, 3):
            shown = {name.casefold(): name for name in self.presence or []}
            for name in args[1]:
                if shown.get(name.casefold()) == name:
                    del shown[name.casefold()]
            shown.update((name.casefold(), name) for name in args[0])
        else:
            return
        self.presence = sorted(shown.values(), key=lambda name: (name.casefold(), name))
        # A big room's window comes with the room's count (last argument).
        windowed = len(args) == (2 if method == widget.UPDATE_PRESENCE else 3)
        self.presenceCount = args[-1] if windowed else len(self.presence)
