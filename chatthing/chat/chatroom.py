"""
L{ChatRoom}: the chat of a server, every room of it.  It makes each page's
element in the room its path names (its L{ChatRoom.makeChatter} is the
element factory, C{chatthing.chatterbox.chat}), keeps usernames unique
across all rooms (through its backplane's roster), and sends global alerts
to all.  It is the L{ILiveApplication} the plugin serves: it declares its
pages, alerts, backplane, metrics and room limits there.

A room (a L{Room}) takes one of the chat room's L{MAX_ROOMS} slots while
someone is logged in there: a page that only looks (never logs in) opens
its room without a slot, so idle pages cannot lock everyone else out of
new rooms, and a login in a room that has no slot yet is refused with
L{TooManyRooms} when they are all taken.  Rooms nobody is in are
forgotten, oldest first, when there are more than L{MAX_ROOMS}, or when
the rooms' bytes are over their budget (L{chatthing.chat.roommemory}).
"""

import time
from collections import OrderedDict
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from ..backplane import Backplane, MemoryBackplane
from ..live import CallRefused, ILiveApplication, LogThrottle
from . import names, widget
from .element import ChatterElement
from .roommemory import RoomBytes, RoomMemory
from .rooms import DEFAULT_HISTORY, Room, presenceTerms
from .validation import LOBBY, roomForPath

#: How many global alerts are kept for pages that resume.
ALERT_HISTORY = 100

#: What a room's pages are told when the backplane is lost, and when it is
#: back (only with C{--redis}: see L{chatthing.backplane}).
LOST_TOUCH = (" * This server has lost touch with the others: until it is back, messages cannot "
              "be sent (send them again then), and new users cannot log in.")
BACK_IN_TOUCH = " * This server is back in touch with the others."

#: How many rooms may have someone logged in at once; and how many rooms a
#: L{ChatRoom} keeps: past this, the one unused the longest and empty is
#: forgotten (with its history) to make way for a new one.
MAX_ROOMS = 1000


class TooManyRooms(CallRefused):
    """
    Someone is logged in in each of L{MAX_ROOMS} rooms: nobody can log in
    in another one.
    """


class NoSuchRoom(CallRefused):
    """
    The page's path names no room.
    """


@implementer(ILiveApplication)
class ChatRoom:
    """
    Every room of a server: C{/} is the lobby, C{/room/NAME} the room NAME,
    opened when a page first asks for it.  Its L{makeChatter} is the element
    factory to serve (its L{ILiveApplication} C{makeElement}): the runtime
    passes it each page's path.

    @ivar rooms: the open rooms by name, least recently joined first.
    @ivar memory: the budgets of what the rooms hold, and what they hold.
    """

    log = Logger()

    def __init__(self, history: int = DEFAULT_HISTORY, maxRooms: int = MAX_ROOMS,
                 backplane: Backplane | None = None, memory: RoomMemory | None = None,
                 **roomOptions: Any) -> None:
        self.maxRooms = maxRooms
        self.memory = memory if memory is not None else RoomMemory()
        self.memory.overBudget = self._overBudget
        self._roomOptions = dict(roomOptions, history=history, memory=self.memory,
                                 admit=self._admit)
        self.rooms: OrderedDict[str, Room] = OrderedDict()
        self._warnings = LogThrottle(time.monotonic)
        self._openOn(backplane if backplane is not None else MemoryBackplane())

    def __repr__(self) -> str:
        users = sum(len(room.online()) for room in self.rooms.values())
        return f"<ChatRoom: {len(self.rooms)} room(s) open, {users} user(s) logged in>"

    def setRoomLimits(self, maxRooms: int, roomBytes: int, totalBytes: int,
                      presenceListMax: int | None = None) -> None:
        """
        Let C{maxRooms} rooms have someone logged in at once; let each room
        keep C{roomBytes} (three quarters for frames kept for replay, a
        quarter for history), and all of them C{totalBytes} (the plugin
        calls this at start-up: C{--max-rooms}, C{--room-bytes},
        C{--rooms-bytes}); past C{presenceListMax} names a room's pages are
        shown a window of names and a count (C{--presence-list-max}; 0:
        every name; L{None}: as it was).
        """
        if presenceListMax is not None:
            self._roomOptions["presenceListMax"] = presenceListMax
            self.backplane.roster.usePresence(presenceTerms(presenceListMax))
        self.maxRooms = maxRooms
        memory = self.memory
        memory.replayBytes, memory.historyBytes = roomBytes - roomBytes // 4, roomBytes // 4
        memory.totalBytes = totalBytes
        for room in self.rooms.values():
            room.stream.limitBytes(memory.replayBytes)
            room.history.maxBytes = memory.historyBytes
            room.bytes.trimHistory(memory.historyBytes)

    def useBackplane(self, backplane: Backplane) -> bool:
        """
        Share rooms, names and alerts through C{backplane} (the plugin calls
        this at start-up, before any page comes, with C{--redis}): the rooms
        open so far are opened again on it.

        The table that tells lookalike names apart is read now too (some
        15 ms), at start-up rather than in the first login: in a join
        storm on a fresh server that first login's read was some 7 µs of
        each connect's CPU at 2,000 pages (L{names.loadConfusables}).

        @return: L{True}: the chat shares everything through it.
        """
        names.loadConfusables()
        self._openOn(backplane)
        return True

    def _openOn(self, backplane: Backplane) -> None:
        self.backplane = backplane
        self.alerts = backplane.stream("alerts", "alerts", ALERT_HISTORY)
        backplane.onStatusChange(self._backplaneChanged)
        for room in self.rooms.values():
            self._close(room)
        self.rooms.clear()
        self.room(LOBBY)

    def _backplaneChanged(self, connected: bool) -> None:
        notice = BACK_IN_TOUCH if connected else LOST_TOUCH
        for room in self.rooms.values():
            if room.chatters:
                room.tellHere(notice)

    def room(self, name: str) -> Room:
        """
        The room called C{name} (lower case), opened if need be (and an
        empty one forgotten, if there are L{maxRooms} already).  Opening
        a room takes no slot: logging in there does (L{_admit}).
        """
        room = self.rooms.get(name)
        if room is None:
            while len(self.rooms) >= self.maxRooms and self._forgetEmptyRoom():
                pass
            room = self.rooms[name] = Room(name, backplane=self.backplane, alerts=self.alerts,
                                           **self._roomOptions)
            self.log.info("opened room {room}", room=name)
        self.rooms.move_to_end(name)
        return room

    def _forgetEmptyRoom(self) -> bool:
        """
        Forget the room nobody is in that was joined the longest ago (never
        the lobby); whether there was one.
        """
        for name, room in self.rooms.items():
            if name != LOBBY and not room.chatters:
                del self.rooms[name]
                self._close(room)
                return True
        return False

    def _close(self, room: Room) -> None:
        room.throttle.flush()
        room.stream.close()
        room.bytes.forget()

    def _admit(self, room: Room) -> None:
        """
        Someone logs in in C{room}: it needs a room slot, unless it has one.

        @raise TooManyRooms: if someone is logged in in L{maxRooms} other
            rooms.
        """
        if room.inUse():
            return
        inUse = sum(1 for other in self.rooms.values() if other.inUse())
        if inUse >= self.maxRooms:
            # The page is told; its session logs the refusal and counts it.
            raise TooManyRooms(f"All {self.maxRooms} rooms are in use; try again later, "
                               "or join a room where people are already chatting.")

    def _overBudget(self) -> None:
        """
        The rooms hold more bytes than their budget: let go of empty rooms,
        the oldest first; then of the oldest frames kept for replay in the
        fullest rooms; then of the oldest history; until they hold three
        quarters of the budget.
        """
        memory = self.memory
        before, target = memory.held, memory.totalBytes * 3 // 4
        for name, room in list(self.rooms.items()):
            if memory.held <= target:
                break
            if name != LOBBY and not room.chatters:
                del self.rooms[name]
                self._close(room)
        for size, trim in ((RoomBytes.replay, RoomBytes.trimReplay),
                           (lambda held: held.history.heldBytes, RoomBytes.trimHistory)):
            while memory.held > target:
                fullest = max((room.bytes for room in self.rooms.values()), key=size)
                if size(fullest) == 0:
                    break
                trim(fullest, size(fullest) // 2)
        self._warnings.warn(self.log, "memory", "rooms held {before} bytes, over their budget of "
                            "{budget}: let go of the oldest, down to {after}", before=before,
                            budget=memory.totalBytes, after=memory.held)

    def pageExists(self, path: str) -> bool:
        """
        Whether C{path} is a room's page (the runtime serves the page there).
        """
        return roomForPath(path) is not None

    def makeChatter(self, page: str = "/") -> ChatterElement:
        """
        The element for a new page at C{page}, in that page's room.

        @raise NoSuchRoom: if no room is there.
        """
        name = roomForPath(page) if isinstance(page, str) else None
        if name is None:
            raise NoSuchRoom(f"there is no room at {page!r}")
        return self.room(name).makeChatter(page)

    #: What the runtime calls for each new page (L{ILiveApplication}): the
    #: same function, so that C{ILiveApplication(chatRoom.makeChatter)} is
    #: C{chatRoom} (see L{chatthing.live.ILiveApplication}).
    makeElement = makeChatter

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
        metrics.addGauge("chat_rooms_in_use", "Rooms where someone is logged in (each takes a slot).",
                         lambda: sum(1 for room in self.rooms.values() if room.inUse()))
        metrics.addGauge("chat_room_bytes",
                         "Bytes the rooms keep: frames for replay, and histories.",
                         lambda: self.memory.held)
        metrics.addGauge("chat_backplane_up",
                         "1 while the backplane (Redis, with --redis) can be used, else 0.",
                         lambda: 0 if self.backplane.problem() else 1)

    def wall(self, message: str) -> int:
        """
        Send the global alert C{message} to every page of every room, on
        every process.

        @return: how many pages of this process it was sent to.
        """
        d = self.alerts.publish([(widget.MESSAGE_TIME, [int(time.time() * 1000)]),
                                 (widget.DISPLAY_MESSAGE, [message])])
        if d is not None:  # a shared stream refuses it while its backplane is down
            d.addErrback(lambda f: self.log.error("alert not sent: {error}", error=f.getErrorMessage()))
        return sum(len(room.chatters) for room in self.rooms.values())
