"""
The chat's rooms.

A L{Room} keeps its pages, who is logged in there, its last messages
(the history a joining page is shown) and two streams: C{room}, the
messages, alerts and presence every page of the room receives (and gets
again, exactly once, if it resumes after a drop), and C{typing}, who is
typing, which is not replayed.  The server-wide L{chatthing.chat.chatroom.ChatRoom}
(the one C{chatthing.chatterbox.chat} belongs to) holds them.
What a room keeps is bounded in bytes (L{chatthing.chat.roommemory}).
"""

import time
from dataclasses import replace
from typing import Any, Callable

from markupsafe import Markup
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..backplane import (
    Backplane,
    Call,
    MemoryBackplane,
    NameTaken,
    Presence,
)
from ..live import SessionMoved, Stream
from . import widget
from .element import ChatterElement
from .parts import Chatter
from .presence import (
    ALERT_THRESHOLD,
    MANY_LEFT_LINE,
    PRESENCE_INTERVAL,
    PRESENCE_LIST_MAX,
    PresenceBatch,
    PresenceThrottle,
    alertLines,
)
from .names import nameKey
from .pages import Pages
from .presencelist import PresenceList
from .roommemory import History, RoomBytes, RoomMemory
from .said import ACTION, MESSAGE, Said, historyCall
from .validation import LOBBY, UsernameTaken, normalizeUsername

#: How many of its last messages a room shows a page that joins.
DEFAULT_HISTORY = 50

#: How many frames of its C{room} stream a room keeps for pages that resume.
STREAM_HISTORY = 1000

#: The widget method the roster calls on a room's stream with a batch of
#: presence changes (who joined, who left: a rename is both), and the key
#: names are held under (lookalikes are one name): the chat's terms, which
#: the backplane speaks (L{chatthing.backplane.Presence}).
PRESENCE = Presence(changed=widget.PRESENCE_CHANGED, nameKey=nameKey,
                    manyLeft=(widget.DISPLAY_MESSAGE, MANY_LEFT_LINE), manyAbove=ALERT_THRESHOLD)


def presenceTerms(listMax: int) -> Presence:
    """
    L{PRESENCE} with rooms of more than C{listMax} names shown as a window
    and a count (0: every name, however many).
    """
    return replace(PRESENCE, listMax=listMax)


#: Seconds during which a page's further "typing" calls are not passed on
#: (the page itself sends at most one every 2 s).
TYPING_INTERVAL = 1.5


class Room:
    """
    One room: its pages, who is logged in, its history, and its streams.

    The room's streams and roster come from its backplane (its own memory,
    or Redis shared with other processes: L{chatthing.backplane}).  Its
    history and presence list are views of its C{room} stream, kept from
    the calls it delivers, so they are the same in every process.

    @ivar chatters: this process's pages of the room, in joining order
        (L{Pages}: asking whether a page is one is one lookup),
        until each has gone for good.
    @ivar stream: what every page in the room receives, replayed on resume.
    @ivar typingStream: who is typing; not replayed.
    @ivar history: the last messages said here, oldest first, each a
        L{Said} (a L{History}, bounded in bytes too).
    @ivar memory: the budgets of the room's bytes, shared by the rooms of
        a L{chatthing.chat.chatroom.ChatRoom}, which it tells of every change in what this room holds.
    @ivar bytes: what this room holds (frames for replay, and history).
    @ivar shown: who the room lists, kept from its stream (L{PresenceList}).
    @ivar throttle: the joins, leaves and renames not yet published, and
        when they will be: one batch per C{presenceInterval} seconds (longer
        in a room of thousands of pages) while they keep coming, at once in
        a quiet room (L{PresenceThrottle}).
    """

    log = Logger()

    def __init__(
        self,
        name: str = LOBBY,
        history: int = DEFAULT_HISTORY,
        backplane: Backplane | None = None,
        streamHistory: int = STREAM_HISTORY,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
        typingInterval: float = TYPING_INTERVAL,
        alerts: Stream | None = None,
        memory: RoomMemory | None = None,
        admit: Callable[["Room"], None] = lambda room: None,
        presenceInterval: float = PRESENCE_INTERVAL,
        reactor: Any = None,
        presenceListMax: int = PRESENCE_LIST_MAX,
    ) -> None:
        self.name = name
        self.backplane = backplane if backplane is not None else MemoryBackplane()
        self.backplane.roster.usePresence(presenceTerms(presenceListMax))
        self.chatters: Pages[Chatter] = Pages()
        self.stream = self.backplane.stream(f"room:{name}", "room", streamHistory)
        self.typingStream = self.backplane.passingStream(f"typing:{name}", "typing")
        self.alerts = alerts
        self.memory = memory if memory is not None else RoomMemory()
        self.history = History(history, self.memory.historyBytes)
        self.bytes = RoomBytes(self.stream, self.history, self.memory)
        self.admit = admit
        self._loggingIn = 0
        self.clock = clock
        self.timer = timer
        self.typingInterval = typingInterval
        self._online: dict[str, Chatter] = {}
        self.shown = PresenceList(streamHistory)
        self._stampedSecond: int | None = None
        self._lastStamp = 0
        self.throttle = PresenceThrottle(self._publishPresence, presenceInterval, reactor,
                                         pages=lambda: len(self.chatters))
        self.stream.observe(self._heard)
        self.backplane.roster.members(name, self.stream).addCallbacks(
            lambda snapshot: self.shown.start(*snapshot),
            lambda failure: self.log.warn("{room}: could not read who is here: {error}",
                                          room=self, error=failure.getErrorMessage()))

    def __repr__(self) -> str:
        return f"<Room {self.name} ({len(self.chatters)} pages)>"

    def inUse(self) -> bool:
        """
        Whether someone is logged in here (or logging in): the room holds
        one of the chat room's slots (L{chatthing.chat.chatroom.ChatRoom.maxRooms}).
        """
        return bool(self._online) or self._loggingIn > 0

    def makeChatter(self, page: str | None = None) -> ChatterElement:
        """
        Make the element for a new page of this room and track it until the
        page goes away.  (C{page}, the page's path, is the
        L{chatthing.chat.chatroom.ChatRoom}'s business.)
        """
        chatter = ChatterElement(self)
        self.chatters.append(chatter)
        return chatter

    def online(self) -> list[str]:
        """
        The names of the users logged in here, on this process, in joining
        order.
        """
        return [chatter.username for chatter in self._online.values() if chatter.username is not None]

    def presence(self) -> list[str]:
        """
        The names of the users logged in here (on every process), sorted as
        people read them.
        """
        return self.shown.names()

    def presenceCount(self) -> int:
        """
        How many users are logged in here (on every process).
        """
        return self.shown.count()

    def presenceMore(self) -> int:
        """
        How many users are logged in here but not in L{presence} (a big
        room lists only its window: L{PresenceList}).
        """
        return self.shown.more()

    def presenceItems(self) -> Markup:
        """
        L{presence} as the page's list items, escaped, made once per change
        (L{PresenceList.html}): what the template draws.
        """
        return self.shown.html()

    def lookup(self, name: str) -> Deferred:
        """
        Whether C{name} is logged in here, in or out of the listed window:
        a L{Deferred} firing with the name as its user spells it, or
        L{None} (one name looked up in the room's shared list).
        """
        return self.backplane.roster.lookup(self.name, name)

    def welcome(self, chatter: Chatter) -> None:
        """
        A page has connected: show it the room's last messages, then send it
        what the room says from now on.  What is for this page only (the
        history, who is here, answers to C{/who} and C{/help}) goes to it
        alone with C{notifyRemote}: one-way, and replayed if the page
        resumes, like the room's stream (and before it).
        """
        self.stream.ready().addCallback(lambda _: self._subscribe(chatter, showHistory=True))

    def restore(self, chatter: Chatter, username: str | None) -> None:
        """
        A page's session has come here from another process: take up where
        it was, without showing the history again or announcing anything.
        If the room's list does not show the user (the other process died
        before its batch told of the join), the next batch lists the user,
        with no alert line (a join told twice changes no list).
        """
        self._subscribe(chatter, showHistory=False)
        if username is not None:
            chatter.username = username
            self._online[username.casefold()] = chatter
            self.backplane.roster.restore(chatter, username, self.name, self.stream,
                                          self._onLeave(username))
            self.log.info("{user} came back to {room}", user=username, room=self.name)
            # In a big room the list is a window: the user may be there
            # unlisted.  Telling the roster again costs no frame (it
            # publishes nothing for a name it shows already), and lists a
            # user whose old process died before its batch went.
            if not self.shown.shows(username) or self.shown.more() > 0:
                self.throttle.batch.joined(username, alert=False)
                self.throttle.changed()

    def _subscribe(self, chatter: Chatter, showHistory: bool) -> None:
        if chatter not in self.chatters:
            return  # gone already
        if showHistory:
            if self.history:
                method, args = historyCall(list(self.history))
                chatter.notifyRemote(method, *args)
            # The whole list once (encoded once for every page until it
            # changes); then the room's stream says who comes and goes.
            chatter.notifyRemoteEncoded(widget.UPDATE_PRESENCE, self.shown.encoded())
        chatter.subscribe(self.stream)
        chatter.subscribe(self.typingStream)
        if self.alerts is not None:
            chatter.subscribe(self.alerts)

    def login(self, chatter: Chatter, username: str) -> Deferred:
        """
        Give C{chatter} the name C{username} and announce it.

        @return: a L{Deferred} firing with the name as stored (trimmed).
        @raise InvalidUsername: if the name is not valid.
        @raise UsernameTaken: (in the L{Deferred}) if someone online, in any
            room of any process, has it.
        """
        name = normalizeUsername(username)
        self.admit(self)
        self._loggingIn += 1

        def done(result: Any) -> Any:
            self._loggingIn -= 1
            return result

        def held(_: Any) -> Deferred:
            # The page is told once the name and the session's record with
            # it would outlive a failover of the store (roster.confirm).
            chatter.username = name
            chatter.sessionStateChanged()
            return self.backplane.roster.confirm(chatter).addCallbacks(
                confirmed, self._unconfirmed, errbackArgs=(chatter, None))

        def confirmed(_: Any) -> str:
            if chatter in self.chatters:  # else leave() let go of the name
                self._online[name.casefold()] = chatter
                self.log.info("{user} joined {room}", user=name, room=self.name)
                self.throttle.batch.joined(name)
                self.throttle.changed()
            return name

        return self._hold(chatter, name).addCallback(held).addBoth(done)

    def rename(self, chatter: Chatter, username: str) -> Deferred:
        """
        Change the logged-in C{chatter}'s name to C{username} and announce it.

        @return: a L{Deferred} firing with the new name as stored.
        """
        name = normalizeUsername(username)
        old = chatter.username
        assert old is not None
        if name == old:
            return succeed(name)

        def held(_: Any) -> Deferred:
            self._online = {
                (name.casefold() if element is chatter else key): element
                for key, element in self._online.items()
            }
            chatter.username = name
            chatter.sessionStateChanged()
            return self.backplane.roster.confirm(chatter).addCallbacks(
                confirmed, self._unconfirmed, errbackArgs=(chatter, old))

        def confirmed(_: Any) -> str:
            self.log.info("{old} is now {new} in {room}", old=old, new=name, room=self.name)
            self.throttle.batch.renamed(old, name)
            self.throttle.changed()
            return name

        return self._hold(chatter, name).addCallback(held)

    def _unconfirmed(self, failure: Failure, chatter: Chatter, old: str | None) -> Failure | Deferred:
        """
        The store did not confirm C{chatter}'s new name: go back to its
        C{old} one (holding it again) or to none, so that what the page is
        told (the failure) is what is held; a name left in Redis on a
        connection now gone is let go of when this process reconnects.
        """
        name = chatter.username
        if chatter not in self.chatters or name is None:
            return failure  # left meanwhile: leave() let go of the name
        self._online.pop(name.casefold(), None)
        chatter.username = None
        if old is None:
            chatter.sessionStateChanged()
            self.backplane.roster.release(chatter).addErrback(lambda _: None)
            return failure

        def back(_: Any) -> Failure:
            self._online[old.casefold()] = chatter
            chatter.username = old
            chatter.sessionStateChanged()
            return failure

        def lost(why: Failure) -> Failure:
            # Neither name held: logged out (its next call says so).
            self.log.warn("{user} in {room} lost the name: {why}", user=old, room=self.name,
                          why=why.getErrorMessage())
            chatter.sessionStateChanged()
            self.backplane.roster.release(chatter).addErrback(lambda _: None)
            self.throttle.batch.left(old)
            self.throttle.changed()
            return failure

        return self._hold(chatter, old).addCallbacks(back, lost)

    def _hold(self, chatter: Chatter, name: str) -> Deferred:
        # Once the room's stream is ready: a page that opened the room on
        # this process is subscribed by then (it asked first), so it gets
        # its own announcement (published with the room's next batch).
        d = self.stream.ready()
        d.addCallback(lambda _: self.backplane.roster.hold(
            chatter, name, self.name, self.stream, onLeave=self._onLeave(name)))

        def taken(failure: Failure) -> None:
            failure.trap(NameTaken)
            raise UsernameTaken(f"The name {name!r} is taken, or looks too much like someone "
                                "online's; please choose another.")

        return d.addErrback(taken)

    def _onLeave(self, name: str) -> list[Call]:
        """
        What to tell the room if C{name}'s process dies and its page does
        not come back.
        """
        return [(widget.DISPLAY_MESSAGE, [f" * user {name} has left the room"])]

    def leave(self, chatter: Chatter, reason: BaseException | None = None) -> None:
        """
        Forget C{chatter}; announce its user's leaving if it had logged in
        (unless its session has only moved to another process).
        """
        self.chatters.discard(chatter)
        name = chatter.username
        if name is not None and self._online.get(name.casefold()) is chatter:
            del self._online[name.casefold()]
            if not isinstance(reason, SessionMoved):
                self.log.info("{user} left {room}", user=name, room=self.name)
                self.backplane.roster.release(chatter).addErrback(lambda failure: self.log.failure(
                    "could not let go of {user}'s name", failure, user=name))
                self.throttle.batch.left(name)
                self.throttle.changed()
        elif name is not None and not isinstance(reason, SessionMoved):
            # Its login is still being confirmed: nobody was told of it.
            self.backplane.roster.release(chatter).addErrback(lambda _: None)
        if not self.chatters:
            # Nobody left who could resume: the frames kept for that go.
            self.bytes.account(dropReplay=True)

    def _publishPresence(self, batch: PresenceBatch) -> None:
        """
        Publish one batch of presence changes: its alert lines (dated) and
        one C{presenceChanged}, which the roster adds (it keeps the room's
        list, shared by every process, in step with the stream).
        """
        joined, left = batch.diff()
        calls: list[Call] = []
        for line in alertLines(batch.events):
            calls.extend(self._stamped(widget.DISPLAY_MESSAGE, line))
        d = self.backplane.roster.publishChanges(self.name, self.stream, calls, joined, left)
        if d is not None:
            d.addErrback(lambda failure: self.log.failure(
                "{room}: could not publish who came and went", failure, room=self.name))

    def tellHere(self, message: str) -> None:
        """
        Show C{message} to the room's pages on this process only.
        """
        self.throttle.flush()
        stream = self.stream.fallback or self.stream
        stream.publish(self._stamped(widget.DISPLAY_MESSAGE, message))

    def wall(self, message: str) -> int:
        """
        Send the alert C{message} to every page of the room.

        @return: how many pages of this process it was sent to.
        """
        self.throttle.flush()
        d = self.stream.publish(self._stamped(widget.DISPLAY_MESSAGE, message))
        if d is not None:  # a shared stream refuses it while its backplane is down
            d.addErrback(lambda f: self.log.error("alert not sent: {error}", error=f.getErrorMessage()))
        return len(self.chatters)

    def tellEverybody(self, who: Chatter, what: str) -> Deferred | None:
        """
        Let every page of the room hear C{who} say C{what}.

        @return: L{None}, or a L{Deferred} that fires when a shared stream
            has taken the message.
        """
        return self._say(Said(MESSAGE, self._speaker(who), what))

    def act(self, who: Chatter, what: str) -> Deferred | None:
        """
        Show every page of the room that C{who} does C{what} (C{/me}).
        """
        return self._say(Said(ACTION, self._speaker(who), what))

    def _speaker(self, who: Chatter) -> str:
        assert who.username is not None, "only a logged-in page speaks"
        return who.username

    def _say(self, said: Said) -> Deferred | None:
        """
        Publish C{said} to the room, dated; the history keeps it when the
        stream delivers it (L{_heard}), on every process alike.
        """
        method, args = said.call()
        self.throttle.flush()
        return self.stream.publish(self._stamped(method, *args))

    def typing(self, who: Chatter) -> bool:
        """
        Tell the room's pages that C{who} is typing, unless it was told less
        than C{typingInterval} seconds ago.

        @return: whether it was told.
        """
        now = self.timer()
        if who.lastTyping is not None and now - who.lastTyping < self.typingInterval:
            return False
        who.lastTyping = now
        self.typingStream.emit(widget.SHOW_TYPING, who.username)
        return True

    def _stamped(self, method: str, *args: Any) -> list[Call]:
        """
        The call C{method(*args)}, dated: the pages learn the time from a
        C{messageTime} call before the line it dates, sent at most once a
        second (a page dates each line with the last time it was sent).
        """
        now = self.clock()
        calls: list[Call] = []
        if int(now) != self._stampedSecond:
            self._stampedSecond = int(now)
            calls.append((widget.MESSAGE_TIME, [int(now * 1000)]))
        calls.append((method, list(args)))
        return calls

    def _heard(self, method: str, args: list) -> None:
        """
        Keep the room's history and presence list from what its stream
        delivers.
        """
        said = Said.fromCall(method, args, self._lastStamp)
        if said is not None:
            self.history.append(said)
        elif method == widget.MESSAGE_TIME and args and isinstance(args[0], int):
            self._lastStamp = args[0]
        elif method == widget.PRESENCE_CHANGED:
            self.shown.heard(self.stream.offset, args)
        self.bytes.account(dropReplay=not self.chatters)

    # Carried across a restart (chatthing.chat.state)

    def savedState(self) -> dict[str, Any]:
        """
        What the room's successor in a restarted process needs: its stream
        (offset and frames kept for replay), history, who is here, and the
        last time its stream said.
        """
        return {"name": self.name, "stream": self.stream.savedState(),
                "history": [said.entry() for said in self.history],
                "presence": self.shown.names(), "lastStamp": self._lastStamp}

    def restoreState(self, stream: dict[str, Any], history: list[Said], presence: list[str],
                     lastStamp: int) -> None:
        """
        Take up where the room saved by L{savedState} was (checked by
        L{chatthing.chat.state}); a new room, before any page comes.
        """
        self.stream.restoreState(stream)
        for said in history:
            self.history.append(said)
        self.shown.start(presence, self.stream.offset)
        # The roster's list too: a big room's window is computed from it
        # (the users listed outside it come back with their sessions).
        self.backplane.roster.restoreGroup(self.name, presence)
        self._lastStamp = lastStamp
        self.bytes.account()
