"""
The chat's rooms.

A L{ChatRoom} keeps its pages, who is logged in there, its last messages
(the history a joining page is shown) and two streams: C{room}, the
messages, alerts and presence every page of the room receives (and gets
again, exactly once, if it resumes after a drop), and C{typing}, who is
typing, which is not replayed.  A L{Lobby} holds every room of a server,
makes each page's element in the room its path names, keeps usernames
unique across all of them, and sends global alerts to all.
"""

import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Callable

from twisted.logger import Logger

from .live import CallRefused, Stream
from .validation import LOBBY, UsernameTaken, normalizeUsername, roomForPath

if TYPE_CHECKING:
    from .chatterbox import ChatterElement

#: How many of its last messages a room shows a page that joins.
DEFAULT_HISTORY = 50

#: How many frames of its C{room} stream a room keeps for pages that resume.
STREAM_HISTORY = 1000

#: How many frames of its C{private} stream a page's element keeps for
#: when the page resumes.
PRIVATE_HISTORY = 100

#: Seconds during which a page's further "typing" calls are not passed on
#: (the page itself sends at most one every 2 s).
TYPING_INTERVAL = 1.5

#: How many rooms a lobby keeps; past this, the one unused the longest and
#: empty is forgotten (with its history) to make way for a new one.
MAX_ROOMS = 1000


class TooManyRooms(CallRefused):
    """
    Every room is in use and there are L{MAX_ROOMS}: no new one can open.
    """


class NoSuchRoom(CallRefused):
    """
    The page's path names no room.
    """


class Usernames:
    """
    The names logged in on a server, compared case-insensitively: who owns
    each.
    """

    def __init__(self) -> None:
        self._owners: dict[str, Any] = {}

    def claim(self, name: str, owner: Any) -> None:
        """
        Give C{name} to C{owner}.

        @raise UsernameTaken: if someone else has it.
        """
        key = name.casefold()
        current = self._owners.get(key)
        if current is not None and current is not owner:
            raise UsernameTaken(f"The name {name!r} is taken; please choose another.")
        self._owners[key] = owner

    def release(self, name: str, owner: Any) -> None:
        """
        C{owner} no longer has C{name}.
        """
        if self._owners.get(name.casefold()) is owner:
            del self._owners[name.casefold()]


class PassingStream(Stream):
    """
    A stream of passing events (who is typing now): a page that comes back
    after a drop is not sent the ones it missed, which would be stale, and
    they take no room in a replay history.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name, history=1)

    def since(self, offset: int) -> list:
        return []


class ChatRoom:
    """
    One room: its pages, who is logged in, its history, and its streams.

    @ivar chatters: every page's element, in joining order, until the page
        has gone for good.
    @ivar stream: what every page in the room receives, replayed on resume.
    @ivar typingStream: who is typing; not replayed.
    @ivar history: the last messages said here, oldest first, as
        C{[kind, speaker, text, epochMilliseconds]}, C{kind} being
        C{"message"} or C{"action"}.
    """

    log = Logger()

    def __init__(
        self,
        name: str = LOBBY,
        history: int = DEFAULT_HISTORY,
        usernames: Usernames | None = None,
        streamHistory: int = STREAM_HISTORY,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
        typingInterval: float = TYPING_INTERVAL,
    ) -> None:
        self.name = name
        self.chatters: list[ChatterElement] = []
        self.stream = Stream("room", streamHistory)
        self.typingStream = PassingStream("typing")
        self.history: deque[list] = deque(maxlen=history)
        self.usernames = usernames if usernames is not None else Usernames()
        self.clock = clock
        self.timer = timer
        self.typingInterval = typingInterval
        self._online: dict[str, ChatterElement] = {}
        self._stampedSecond: int | None = None

    def __repr__(self) -> str:
        return f"<ChatRoom {self.name} ({len(self.chatters)} pages)>"

    def makeChatter(self, page: str | None = None) -> "ChatterElement":
        """
        Make the element for a new page of this room and track it until the
        page goes away.  (C{page}, the page's path, is the lobby's business.)
        """
        from .chatterbox import ChatterElement

        chatter = ChatterElement(self)
        self.chatters.append(chatter)
        chatter.notifyOnDisconnect().addCallback(lambda reason: self.leave(chatter))
        return chatter

    def online(self) -> list[str]:
        """
        The names of the users logged in here now, in joining order.
        """
        return [chatter.username for chatter in self._online.values()]

    def presence(self) -> list[str]:
        """
        The names of the users logged in here, sorted as people read them.
        """
        return sorted(self.online(), key=lambda name: (name.casefold(), name))

    def welcome(self, chatter: "ChatterElement") -> None:
        """
        A page has connected: show it the room's last messages, then send it
        what the room says from now on.  What is for this page only (the
        history, answers to C{/who} and C{/help}) goes on a stream of its
        own, C{private}: like the room's, it is one-way (the page sends no
        answer) and replayed if the page resumes.
        """
        chatter.private = Stream("private", PRIVATE_HISTORY)
        chatter.subscribe(chatter.private)
        if self.history:
            chatter.private.emit("displayHistory", list(self.history))
        chatter.subscribe(self.stream)
        chatter.subscribe(self.typingStream)

    def login(self, chatter: "ChatterElement", username: str) -> str:
        """
        Give C{chatter} the name C{username} and announce it.

        @return: the name as stored (trimmed).
        @raise InvalidUsername: if the name is not valid.
        @raise UsernameTaken: if someone online, in any room, has it.
        """
        name = normalizeUsername(username)
        self.usernames.claim(name, chatter)
        self._online[name.casefold()] = chatter
        chatter.username = name
        self.log.info("{user} joined {room}", user=name, room=self.name)
        self.wall(f" * user {name} has joined the room")
        self._presenceChanged()
        return name

    def rename(self, chatter: "ChatterElement", username: str) -> str:
        """
        Change the logged-in C{chatter}'s name to C{username} and announce it.

        @return: the new name as stored.
        """
        name = normalizeUsername(username)
        old = chatter.username
        assert old is not None
        if name == old:
            return name
        self.usernames.claim(name, chatter)
        if name.casefold() != old.casefold():
            self.usernames.release(old, chatter)
        self._online = {
            (name.casefold() if element is chatter else key): element
            for key, element in self._online.items()
        }
        chatter.username = name
        self.log.info("{old} is now {new} in {room}", old=old, new=name, room=self.name)
        self.wall(f" * user {old} is now known as {name}")
        self._presenceChanged()
        return name

    def leave(self, chatter: "ChatterElement") -> None:
        """
        Forget C{chatter}; announce its user's leaving if it had logged in.
        """
        if chatter in self.chatters:
            self.chatters.remove(chatter)
        if chatter.username is not None and self._online.get(chatter.username.casefold()) is chatter:
            del self._online[chatter.username.casefold()]
            self.usernames.release(chatter.username, chatter)
            self.log.info("{user} left {room}", user=chatter.username, room=self.name)
            self.wall(f" * user {chatter.username} has left the room")
            self._presenceChanged()

    def wall(self, message: str) -> int:
        """
        Send the alert C{message} to every page of the room.

        @return: how many pages it was sent to.
        """
        self._stamp()
        self.stream.emit("displayMessage", message)
        return len(self.chatters)

    def tellEverybody(self, who: "ChatterElement", what: str) -> None:
        """
        Let every page of the room hear C{who} say C{what}.
        """
        self._remember("message", who.username, what)
        self.stream.emit("displayUserMessage", who.username, what)

    def act(self, who: "ChatterElement", what: str) -> None:
        """
        Show every page of the room that C{who} does C{what} (C{/me}).
        """
        self._remember("action", who.username, what)
        self.stream.emit("displayAction", who.username, what)

    def typing(self, who: "ChatterElement") -> bool:
        """
        Tell the room's pages that C{who} is typing, unless it was told less
        than C{typingInterval} seconds ago.

        @return: whether it was told.
        """
        now = self.timer()
        if who.lastTyping is not None and now - who.lastTyping < self.typingInterval:
            return False
        who.lastTyping = now
        self.typingStream.emit("showTyping", who.username)
        return True

    def _remember(self, kind: str, speaker: str | None, text: str) -> None:
        when = self._stamp()
        self.history.append([kind, speaker, text, when])

    def _stamp(self) -> int:
        """
        The time now, in milliseconds since the epoch (UTC).  The pages learn
        it from a C{messageTime} call on the stream before the line it
        dates, sent at most once a second: a page dates each line with the
        last time it was sent.
        """
        now = self.clock()
        millis = int(now * 1000)
        if int(now) != self._stampedSecond:
            self._stampedSecond = int(now)
            self.stream.emit("messageTime", millis)
        return millis

    def _presenceChanged(self) -> None:
        self.stream.emit("updatePresence", self.presence())


class Lobby:
    """
    Every room of a server: C{/} is the lobby, C{/room/NAME} the room NAME,
    opened when a page first asks for it.  Its L{makeChatter} is the element
    factory to serve: the runtime passes it each page's path.

    @ivar rooms: the open rooms by name, least recently joined first.
    """

    log = Logger()

    def __init__(self, history: int = DEFAULT_HISTORY, maxRooms: int = MAX_ROOMS,
                 **roomOptions: Any) -> None:
        self.usernames = Usernames()
        self.maxRooms = maxRooms
        self._roomOptions = dict(roomOptions, history=history)
        self.rooms: OrderedDict[str, ChatRoom] = OrderedDict()
        self.room(LOBBY)

    def room(self, name: str) -> ChatRoom:
        """
        The room called C{name} (lower case), opened if need be.

        @raise TooManyRooms: if it would be one too many.
        """
        room = self.rooms.get(name)
        if room is None:
            if len(self.rooms) >= self.maxRooms:
                self._forgetOneRoom()
            room = self.rooms[name] = ChatRoom(name, usernames=self.usernames, **self._roomOptions)
            self.log.info("opened room {room}", room=name)
        self.rooms.move_to_end(name)
        return room

    def _forgetOneRoom(self) -> None:
        for name, room in self.rooms.items():
            if name != LOBBY and not room.chatters:
                del self.rooms[name]
                return
        raise TooManyRooms(f"all {self.maxRooms} rooms are in use")

    def pageExists(self, path: str) -> bool:
        """
        Whether C{path} is a room's page (the runtime serves the page there).
        """
        return roomForPath(path) is not None

    def makeChatter(self, page: str = "/") -> "ChatterElement":
        """
        The element for a new page at C{page}, in that page's room.

        @raise NoSuchRoom: if no room is there.
        """
        name = roomForPath(page) if isinstance(page, str) else None
        if name is None:
            raise NoSuchRoom(f"there is no room at {page!r}")
        return self.room(name).makeChatter(page)

    def leave(self, chatter: "ChatterElement") -> None:
        """
        Forget C{chatter} (its page has gone), in whichever room it is.
        """
        chatter.room.leave(chatter)

    def online(self) -> list[str]:
        """
        The names of the users logged in, in any room.
        """
        return [name for room in self.rooms.values() for name in room.online()]

    def registerMetrics(self, metrics: Any) -> None:
        """
        Add the chat's own numbers to a site's metrics (the runtime calls
        this once per site): users logged in, and rooms open.
        """
        metrics.addGauge("chat_users", "Users logged in, in all rooms.",
                         lambda: len(self.online()))
        metrics.addGauge("chat_rooms", "Rooms open.", lambda: len(self.rooms))

    def wall(self, message: str) -> int:
        """
        Send the global alert C{message} to every page of every room.

        @return: how many pages it was sent to.
        """
        return sum(room.wall(message) for room in list(self.rooms.values()) if room.chatters)
