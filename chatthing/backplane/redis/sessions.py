"""
L{RedisSessions}: the live runtime's session store in Redis, so that a
page can take its session to another process.
"""

import json
import secrets
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...live import SessionRecord, StoredSession
from .. import BackplaneDown, Presence
from . import lua
from .connection import RedisConnection


def _notTold(ident: str) -> None:
    """
    A L{RedisSessions}' C{movedAway} before the runtime sets its own.
    """


class RedisSessions:
    """
    The session store in Redis: what another process needs to carry on
    each page's session, and which process has it.

    @ivar deadAfter: seconds without a heartbeat after which a process is
        taken for dead (its sessions can be adopted without telling it).
    @ivar epoch: the epoch of what Redis keeps (L{SessionStore}), read (or
        set, if Redis has none) each time the connection is made; L{None}
        before.
    """

    log = Logger()

    def __init__(self, connection: RedisConnection, deadAfter: float) -> None:
        #: Set by the runtime (see L{SessionStore}); until then, nothing to do.
        self.movedAway: Callable[[str], None] = _notTold
        self.connection = connection
        self.deadAfter = deadAfter
        self.live: dict[str, StoredSession] = {}
        self.epoch: str | None = None
        #: Set by the runtime (see L{SessionStore}).
        self.epochChanged: Callable[[str], None] = _notTold

    def _keys(self, ident: str) -> list[str]:
        prefix = self.connection.prefix
        return [f"{prefix}session:{ident}", f"{prefix}proc:{self.connection.proc}:sessions"]

    def save(self, session: StoredSession) -> None:
        self.live[session.ident] = session
        if self.connection.connected:
            self._save(session).addErrback(self._failed, "record", session)

    def _save(self, session: StoredSession) -> Deferred:
        state = json.dumps(session.element.sessionState())
        return self.connection.script(lua.SAVE_SESSION, self._keys(session.ident),
                                     [session.page, state, self.connection.proc])

    def forget(self, session: StoredSession) -> None:
        self.live.pop(session.ident, None)
        if self.connection.connected:
            d = self.connection.script(lua.FORGET_SESSION, self._keys(session.ident),
                                      [self.connection.proc])
            d.addErrback(self._failed, "forget", session)

    def adopt(self, ident: str) -> Deferred:
        if not self.connection.connected:
            return fail(BackplaneDown("Redis cannot be reached"))
        prefix = self.connection.prefix
        d = self.connection.script(
            lua.ADOPT_SESSION, [f"{prefix}session:{ident}", f"{prefix}procs"],
            [prefix, self.connection.proc, int(self.deadAfter * 1000)],
        )

        def adopted(record: Any) -> SessionRecord | None:
            if not record:
                return None
            page, state = record
            return SessionRecord(page, json.loads(state) if state else None)

        return d.addCallback(adopted)

    def resync(self, presence: Presence) -> Deferred:
        """
        Record this process's sessions again, and end in Redis those that
        ended here while it could not be told (their names leave, in the
        roster's C{presence} terms).
        """
        prefix = self.connection.prefix
        epoch = self.connection.script(lua.EPOCH, [f"{prefix}epoch"], [secrets.token_hex(8)])
        work = [epoch.addCallback(self._epochRead)]
        work += [self._save(session) for session in list(self.live.values())]
        work.append(self.connection.script(
            lua.END_STALE, [],
            [prefix, self.connection.proc, 1000, json.dumps(presence.left), presence.listMax,
             *self.live],
        ))
        return gatherResults(work, consumeErrors=True)

    def _epochRead(self, epoch: str) -> None:
        old, self.epoch = self.epoch, epoch
        if old is not None and epoch != old:
            self.log.warn("Redis lost what it kept (restarted with nothing saved?): epoch "
                          "{old} is now {new}; pages are told", old=old, new=epoch)
        if epoch != old:
            # Pages welcomed before the first read (a process starting) had
            # none in their welcome: they are told it as after a change.
            self.epochChanged(epoch)

    def _failed(self, failure: Failure, what: str, session: StoredSession) -> None:
        self.log.warn("could not {what} {session} in Redis: {error}", what=what,
                      session=session, error=failure.getErrorMessage())
