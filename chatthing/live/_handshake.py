"""
The opening of a page connection: its C{hello} starts a new session,
resumes one kept here, or takes over one another process had (adopt).

L{Handshake} has that one job.  It is made once per factory and told the
few things it needs explicitly, so it cannot reach into the factory for
more: a L{SessionHost} (make and show an element, start or adopt a
session), the sessions kept here, the metrics, and the limits each welcome
announces.  The connection it greets is a L{Greeted}.
"""

from typing import Any, Mapping, Protocol, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._apps import ElementUnavailable
from ._connection import PageConnection
from ._element import LiveElement
from ._errors import LiveError, ProtocolError
from ._logsafe import cut
from ._metrics import EXPIRED, RESUMED, UNREPLAYABLE, LiveMetrics
from ._session import LiveSession

#: Why a session asked for cannot be resumed when it is not known here.
_UNKNOWN = "the session has expired or is unknown to this server"


class SessionHost(Protocol):
    """
    What the handshake needs of the factory (L{LiveServerFactory} is one).
    """

    def makeElement(self, page: str = "/") -> LiveElement | None: ...
    def showElement(self, element: LiveElement, render: bool = True) -> dict[str, Any]: ...
    def startSession(self, element: LiveElement, page: str = "/", ident: str | None = None) -> LiveSession: ...
    def adoptSession(self, ident: str) -> Deferred: ...


class Greeted(PageConnection, Protocol):
    """
    What the handshake needs of the connection it opens (a
    L{LiveServerProtocol}): where it is, whether it is still open, how to
    refuse and close it, and the session it gets.

    @ivar adopting: a session is being taken over for it; until then it may
        send nothing more.
    """

    peer: str | None
    session: LiveSession | None
    adopting: bool

    def isOpen(self) -> bool: ...
    def helloReceived(self) -> None: ...
    def refuse(self, ident: int | None, error: BaseException, quiet: bool = False) -> None: ...
    def closeWithCode(self, code: int, reason: str) -> None: ...


class Handshake:
    """
    Answers each connection's first frame: a C{welcome} with a new session,
    or C{resumed} with the one it asked for.
    """

    log = Logger()

    def __init__(self, host: SessionHost, sessions: Mapping[str, LiveSession],
                 metrics: LiveMetrics, limits: Mapping[str, Any], urls: Sequence[str] = ()) -> None:
        """
        @param urls: the public WebSocket URLs of the cluster's processes,
            told in each welcome (C{"urls"}) if there are any.
        @param sessions: the sessions kept here by id (the factory's, live:
            read at each hello).
        @param limits: what each welcome frame says of the server's limits.
        """
        self._host = host
        self._sessions = sessions
        self._metrics = metrics
        self._limits = dict(limits)
        self._urls = list(urls)

    def hello(self, connection: Greeted, frame: _wire.Frame) -> None:
        """
        The first frame of C{connection}: it must be a C{hello} in the
        protocol's version.

        @raise ProtocolError: it is not a C{hello}.
        """
        if not isinstance(frame, _wire.Hello):
            if isinstance(frame, _wire.Malformed) and frame.type == _wire.HELLO:
                raise frame.error
            raise ProtocolError('the first frame must be "hello"')
        version = frame.version
        if type(version) is not int or version != _wire.PROTOCOL_VERSION:
            connection.refuse(None, ProtocolError(
                f"protocol version {version!r} is not supported; "
                f"this server speaks version {_wire.PROTOCOL_VERSION}"
            ))
            connection.closeWithCode(_wire.CLOSE_PROTOCOL_ERROR, "unsupported protocol version")
            return
        connection.helloReceived()
        resume = frame.resume
        if resume is None:
            self._start(connection, frame, None)
        elif resume.session in self._sessions:
            expired = self._resume(connection, resume)
            if expired is not None:
                self._start(connection, frame, expired)
        else:
            # Perhaps another process had the session: ask the store.
            connection.adopting = True
            d = self._host.adoptSession(resume.session)
            d.addCallback(self._adopted, connection, frame, resume)
            d.addErrback(self._notAdopted, connection, frame)

    def _adopted(self, session: LiveSession | None, connection: Greeted, frame: _wire.Hello,
                 resume: _wire.Resume) -> None:
        connection.adopting = False
        if not connection.isOpen():
            if session is not None:
                session.awaitPage()
            return
        why: str | None
        if session is None:
            self._metrics.resumed(EXPIRED)
            why = _UNKNOWN
        elif session.moved:
            # Already here: taken over for an earlier connection of the page.
            why = self._resume(connection, resume)
            if why is not None:
                self._start(connection, frame, why)
            return
        else:
            why = session.resumeMoved(connection, resume.seq, resume.streams)
            if why is None:
                connection.session = session
                self._metrics.resumed(RESUMED)
                self.log.info("{session} taken over from another server by {peer}",
                              session=session, peer=connection.peer)
                return
            self._metrics.resumed(UNREPLAYABLE)
            session.end(Failure(ConnectionLost(why)))
        self.log.info("{peer} could not resume: {why}", peer=connection.peer, why=why)
        self._start(connection, frame, why)

    def _notAdopted(self, failure: Failure, connection: Greeted, frame: _wire.Hello) -> None:
        connection.adopting = False
        if failure.check(LiveError):
            self.log.info("{peer} could not resume: {why}", peer=connection.peer,
                          why=cut(failure.getErrorMessage()))
        else:
            self.log.failure("could not take over a session for {peer}", failure, peer=connection.peer)
        self._metrics.resumed(EXPIRED)
        if connection.isOpen():
            self._start(connection, frame, "the session could not be taken over")

    def _resume(self, connection: Greeted, resume: _wire.Resume) -> str | None:
        """
        Resume the session kept here that C{resume} names.

        @return: L{None} if resumed, else why not.
        """
        session = self._sessions.get(resume.session)
        why: str | None
        if session is None:
            why = _UNKNOWN
            self._metrics.resumed(EXPIRED)
        else:
            why = session.resume(connection, resume.seq, resume.streams)
            if why is None:
                connection.session = session
                self._metrics.resumed(RESUMED)
                self.log.info("{session} resumed from {peer}", session=session, peer=connection.peer)
                return None
            self._metrics.resumed(UNREPLAYABLE)
            session.end(Failure(ConnectionLost(why)))
        self.log.info("{peer} could not resume: {why}", peer=connection.peer, why=why)
        return why

    def _start(self, connection: Greeted, frame: _wire.Hello, expired: str | None) -> None:
        """
        A new element and session for the page; the welcome says why its
        old session is gone (C{expired}), if it asked for one.
        """
        host = self._host
        try:
            element = host.makeElement(frame.page)
        except LiveError as e:
            # The application refused this page (no such room...): say why.
            connection.refuse(None, e)
            connection.closeWithCode(_wire.CLOSE_SERVER_ERROR, str(e))
            return
        if element is None:
            connection.closeWithCode(_wire.CLOSE_SERVER_ERROR, "the server could not create an element")
            return
        try:
            shown = host.showElement(element, frame.render)
        except ElementUnavailable as e:
            connection.refuse(None, e, quiet=True)  # showElement logged it
            connection.closeWithCode(_wire.CLOSE_ELEMENT_UNAVAILABLE, str(e))
            return
        session = host.startSession(element, frame.page)
        connection.session = session
        session.attach(connection)
        welcome: dict[str, Any] = {
            "type": _wire.WELCOME,
            "version": _wire.PROTOCOL_VERSION,
            "session": session.ident,
            "element": shown,
            "limits": dict(self._limits),
        }
        if expired is not None:
            welcome["expired"] = expired
        if self._urls:
            welcome["urls"] = list(self._urls)
        if session.store.epoch is not None:
            welcome["epoch"] = session.store.epoch
        connection.sendLiveFrame(welcome)
        element._liveAttach(session)
