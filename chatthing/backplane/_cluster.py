"""
The roster and the session store of the Redis backplane.
"""

import json
import time
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..live import CallRefused, Stream
from ..live._logsafe import LogThrottle, cut
from ..live._sessionstore import SessionRecord
from . import JOINED, LEFT, STORE_UNREACHABLE, BackplaneDown, Call, NameTaken, _lua
from ._shared import SharedStream


def nameKey(name: str) -> str:
    """
    The chat's key for C{name} (L{chatthing.chat.names.nameKey}), imported
    when first used: C{chatthing.chat} imports the backplane.
    """
    # TODO(layers): the name key should come from the application (the
    # backplanepkg branch makes the roster take it from the chat).
    from ..chat.names import nameKey as chatNameKey

    return chatNameKey(name)


if TYPE_CHECKING:
    from ..live._session import LiveSession
    from .redis import RedisBackplane

#: The widget methods told that someone joined a group, or left it.
JOINED_METHOD = json.dumps(JOINED)
LEFT_METHOD = json.dumps(LEFT)


def encodeCalls(calls: list[Call]) -> list[str]:
    return [json.dumps([method, list(args)], separators=(",", ":"), ensure_ascii=False)
            for method, args in calls]


def holderId(holder: Any) -> str:
    """
    The id of a holder in Redis: its session's, which stays the same when
    the session moves to another process.
    """
    if holder.sessionId is None:
        raise BackplaneDown("the page is not attached")
    return holder.sessionId


def sharedStream(stream: Stream) -> SharedStream:
    """
    C{stream} as the L{SharedStream} it must be: names are held in Redis
    together with the group's stream there (one script writes both), so a
    L{RedisRoster} takes only the streams its backplane made, and says so
    instead of failing later on a missing C{key}.
    """
    if not isinstance(stream, SharedStream):
        raise TypeError(f"a Redis roster needs a stream of its backplane's, not {stream!r}")
    return stream


class RedisRoster:
    """
    Names held across the cluster, in Redis (see L{_lua.HOLD}).  Remembers
    what this process's holders hold, to record it again in a Redis that
    lost it.
    """

    log = Logger()

    def __init__(self, backplane: "RedisBackplane") -> None:
        self.backplane = backplane
        self.held: dict[str, tuple[str, str, SharedStream, list[Call]]] = {}
        self._warnings = LogThrottle(time.monotonic)

    def hold(self, holder: Any, name: str, group: str, stream: Stream,
             announce: list[Call], onLeave: list[Call]) -> Deferred:
        shared = sharedStream(stream)
        try:
            ident = holderId(holder)
        except BackplaneDown as e:
            return fail(e)
        d = self.backplane.whenConnected(timeout=self.backplane.loginWait)

        def connected(up: bool) -> Deferred:
            if not up:
                raise BackplaneDown("Logins are paused while this server is cut off from the "
                                    "others; try again in a moment.")
            return self._hold(ident, name, group, shared, onLeave, announce, quiet=False)

        d.addCallback(connected)

        def held(result: Any) -> None:
            if result == 0:
                raise NameTaken(f"the name {name!r} is taken")
            self.held[ident] = (name, group, shared, onLeave)

        def failed(failure: Failure) -> Failure:
            if failure.check(CallRefused):
                return failure
            # Redis's own words (an error, a timeout) are for the operator.
            self._warnings.warn(self.log, "hold", "could not hold a name in Redis: {error}",
                                error=cut(failure.getErrorMessage()))
            raise BackplaneDown(STORE_UNREACHABLE)

        return d.addCallback(held).addErrback(failed)

    def _hold(self, ident: str, name: str, group: str, stream: SharedStream, onLeave: list[Call],
              announce: list[Call], quiet: bool) -> Deferred:
        prefix = self.backplane.prefix
        key = nameKey(name)
        return self.backplane.script(
            _lua.HOLD,
            [f"{prefix}names", f"{prefix}holder:{ident}", f"{prefix}group:{group}", stream.key],
            [prefix, key, name, ident, group, json.dumps(encodeCalls(onLeave)), stream.maxlen,
             self.backplane.nextOrigin(), JOINED_METHOD, LEFT_METHOD, "1" if quiet else "0",
             *encodeCalls(announce)],
        )

    def restore(self, holder: Any, name: str, group: str, stream: Stream,
                onLeave: list[Call]) -> None:
        """
        C{holder}'s session, which holds C{name}, has moved to this process.
        """
        self.held[holderId(holder)] = (name, group, sharedStream(stream), onLeave)

    def members(self, group: str, stream: Stream) -> Deferred:
        """
        The group's members, once Redis can be reached.
        """
        key = sharedStream(stream).key
        d = self.backplane.whenConnected()
        d.addCallback(lambda _: self.backplane.script(
            _lua.MEMBERS, [f"{self.backplane.prefix}group:{group}", key], []))
        return d.addCallback(lambda reply: (reply[1], int(reply[0])))

    def release(self, holder: Any, announce: list[Call]) -> Deferred:
        ident = holder.sessionId
        held = self.held.pop(ident, None) if ident is not None else None
        if ident is None:
            return fail(BackplaneDown("the page was never attached"))
        if not self.backplane.connected:
            # Only this process's pages can be told now; Redis is told
            # when it is back (see RedisSessions.resync).
            if held is not None:
                held[2].fallback.publish([*announce, (LEFT, [held[0]])])
            return fail(BackplaneDown("Redis cannot be reached"))
        prefix = self.backplane.prefix
        return self.backplane.script(
            _lua.RELEASE, [],
            [prefix, ident, held[2].maxlen if held else 1000, self.backplane.nextOrigin(),
             LEFT_METHOD, *encodeCalls(announce)],
        )

    def resync(self) -> Deferred:
        """
        Record again what this process's holders hold, quietly (a Redis
        that restarted lost it); a name someone else took meanwhile is
        logged and kept here.
        """
        def checked(result: Any, ident: str, name: str) -> None:
            if result == 0:
                self.log.warn("after Redis came back, {name} is held by someone else too", name=name)

        work = []
        for ident, (name, group, stream, onLeave) in list(self.held.items()):
            d = self._hold(ident, name, group, stream, onLeave, [], quiet=True)
            work.append(d.addCallback(checked, ident, name))
        return gatherResults(work, consumeErrors=True)


def _notTold(ident: str) -> None:
    """
    A L{RedisSessions}' C{movedAway} before the runtime sets its own.
    """


class RedisSessions:
    """
    The session store in Redis: what another process needs to carry on
    each page's session, and which process has it.
    """

    log = Logger()

    def __init__(self, backplane: "RedisBackplane") -> None:
        #: Set by the runtime (see L{SessionStore}); until then, nothing to do.
        self.movedAway: Callable[[str], None] = _notTold
        self.backplane = backplane
        self.live: dict[str, "LiveSession"] = {}

    def _keys(self, ident: str) -> list[str]:
        prefix = self.backplane.prefix
        return [f"{prefix}session:{ident}", f"{prefix}proc:{self.backplane.proc}:sessions"]

    def save(self, session: "LiveSession") -> None:
        self.live[session.ident] = session
        if self.backplane.connected:
            self._save(session).addErrback(self._failed, "record", session)

    def _save(self, session: "LiveSession") -> Deferred:
        state = json.dumps(session.element.sessionState())
        return self.backplane.script(_lua.SAVE_SESSION, self._keys(session.ident),
                                     [session.page, state, self.backplane.proc])

    def forget(self, session: "LiveSession") -> None:
        self.live.pop(session.ident, None)
        if self.backplane.connected:
            d = self.backplane.script(_lua.FORGET_SESSION, self._keys(session.ident),
                                      [self.backplane.proc])
            d.addErrback(self._failed, "forget", session)

    def adopt(self, ident: str) -> Deferred:
        if not self.backplane.connected:
            return fail(BackplaneDown("Redis cannot be reached"))
        prefix = self.backplane.prefix
        d = self.backplane.script(
            _lua.ADOPT_SESSION, [f"{prefix}session:{ident}", f"{prefix}procs"],
            [prefix, self.backplane.proc, int(self.backplane.deadAfter * 1000)],
        )

        def adopted(record: Any) -> SessionRecord | None:
            if not record:
                return None
            page, state = record
            return SessionRecord(page, json.loads(state) if state else None)

        return d.addCallback(adopted)

    def resync(self) -> Deferred:
        """
        Record this process's sessions again, and end in Redis those that
        ended here while it could not be told.
        """
        prefix = self.backplane.prefix
        work = [self._save(session) for session in list(self.live.values())]
        work.append(self.backplane.script(
            _lua.END_STALE, [],
            [prefix, self.backplane.proc, 1000, LEFT_METHOD, *self.live],
        ))
        return gatherResults(work, consumeErrors=True)

    def _failed(self, failure: Failure, what: str, session: "LiveSession") -> None:
        self.log.warn("could not {what} {session} in Redis: {error}", what=what,
                      session=session, error=failure.getErrorMessage())
