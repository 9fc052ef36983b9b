"""
L{LiveServerFactory}: makes the connections and the elements, and keeps the
sessions of the pages connected or coming back.
"""

import secrets
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.protocol import TrafficStats
from jinja2 import Environment
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._app import ILiveApplication
from ._apps import AppFolders, ElementUnavailable, widgetModule
from ._budget import PartialBytes
from ._element import LiveElement
from ._errors import LiveError
from ._footprint import Validators
from ._handshake import Handshake
from ._logsafe import LogThrottle, cut
from ._metrics import LiveMetrics
from ._protocol import LiveServerProtocol
from ._sending import WriteCoalescer
from ._session import LiveSession
from ._sessionstore import LocalSessions, SessionRecord, SessionStore
from ._settings import LiveSettings
from ._timerwheel import TimerWheel


class _ExactTimer:
    """
    Timers for Autobahn's handshake timeouts and heartbeat, on the reactor,
    in place of txaio's batched timer, which floors every deadline to a
    whole second: with it a ping timeout under a second may fire at once
    (dropping healthy pages), and a 10 s one after 9 s.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> "_Timer":
        return _Timer(self.reactor.callLater(delay, func, *args, **kwargs))


class _Timer:
    __slots__ = ("call",)

    def __init__(self, call: Any) -> None:
        self.call = call

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


class LiveServerFactory(WebSocketServerFactory):
    """
    Makes one L{LiveServerProtocol} per page connection and one element per
    new page, by its application's C{makeElement}; keeps each page's session
    until it ends, so that a page can come back to it.

    @ivar application: the L{ILiveApplication} served: C{elementFactory}
        itself if it provides it, else what it is adapted to (a plain
        element factory becomes a L{CallableApplication}).
    @ivar sessions: the sessions not ended, by id.
    @ivar connections: the open connections.
    """

    protocol = LiveServerProtocol
    log = Logger()

    def __init__(
        self,
        elementFactory: ILiveApplication | Callable[[], LiveElement],
        templates: Environment,
        settings: LiveSettings = LiveSettings(),
        reactor: Any = None,
        sessionStore: SessionStore | None = None,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.application = ILiveApplication(elementFactory)
        self.templates = templates
        #: The apps whose own files are served under C{/apps/}.
        self.apps = AppFolders()
        self.settings = settings
        self.sessions: dict[str, LiveSession] = {}
        self.sessionStore = sessionStore if sessionStore is not None else LocalSessions()
        self.sessionStore.movedAway = self._sessionMovedAway
        self.sessionStore.epochChanged = self._storeEpochChanged
        # Each open connection, and what fires once it has closed while the
        # server shuts down (L{None} until then: a Deferred a page is too
        # much to keep for the one time it is wanted).
        self.connections: dict[LiveServerProtocol, Deferred | None] = {}
        #: The connections' timers (Autobahn's heartbeats and timeouts,
        #: the wait for a hello): one reactor call a tick for them all.
        self.timers = TimerWheel(reactor)
        self._batched_timer = self.timers
        #: The reactor's clock, one bound method for every connection's
        #: rate buckets rather than one each.
        self.clock = reactor.seconds
        #: What every connection's traffic adds to (Autobahn's counters).
        self.trafficStats = TrafficStats()
        #: UTF-8 validators lent to connections, one a message.
        self.validators = Validators()
        # One bound method for every session to call when it ends.
        self._ended = self._sessionEnded
        self.coalescer = WriteCoalescer.of(reactor)
        self.metrics = LiveMetrics(lambda: len(self.connections), lambda: len(self.sessions))
        # What every connection holds in messages not yet finished.
        self.partialBytes = PartialBytes(settings.maxPartialBytes)
        self.metrics.addGauge("live_partial_message_bytes",
                              "Bytes held in WebSocket messages begun and not yet finished.",
                              lambda: self.partialBytes.total)
        # Warnings any page can cause at will: a few lines and a count.
        self.logThrottle = LogThrottle(reactor.seconds)
        self.application.registerMetrics(self.metrics)
        #: Answers each connection's hello, through the four operations of
        #: this factory it names (L{SessionHost}).
        self.handshake = Handshake(
            self, self.sessions, self.metrics,
            {"maxFrameBytes": settings.maxFrameBytes, "gracePeriod": settings.gracePeriod},
            urls=settings.publicUrls)
        # failByDrop=False: a connection Autobahn fails (a frame over the hard
        # limit: 1009; invalid UTF-8: 1007) is closed with its close code, as
        # docs/protocol.md says, instead of the TCP connection being dropped.
        # autoPingRestartOnAnyTraffic=False: only a pong to our ping shows
        # a page is alive; Autobahn would take any frame (one ack a second)
        # as an answer, and the ping timeout would never fire.
        self.setProtocolOptions(
            autoPingRestartOnAnyTraffic=False,
            maxMessagePayloadSize=max(_wire.HARD_MAX_FRAME_BYTES, 4 * settings.maxFrameBytes),
            failByDrop=False,
            autoPingInterval=settings.pingInterval,
            autoPingTimeout=settings.pingTimeout,
            maxConnections=settings.maxConnections,
        )

    def buildProtocol(self, addr: Any) -> Any:
        connection: Any = super().buildProtocol(addr)
        if connection is not None:
            # Its Autobahn options are read from here (L{FactoryOption}).
            connection._options = self
        return connection

    def pageExists(self, path: str) -> bool:
        """
        Whether the page shell is served at C{path}: the application says
        (a plain element factory serves only C{/}).
        """
        try:
            return bool(self.application.pageExists(path))
        except Exception:
            self.log.failure("pageExists({path}) raised", path=cut(path))
            return False

    def makeElement(self, page: str = "/") -> LiveElement | None:
        """
        A new element for a page at C{page} (the hello frame's "page"), made
        by the application's C{makeElement(page)}.  L{None} if it failed.

        @raise LiveError: the factory's own refusal (no such page...), for the
            page to be told.
        """
        try:
            element = self.application.makeElement(page)
        except LiveError:
            raise
        except Exception:
            self.log.failure("{application!r} could not make an element", application=self.application)
            return None
        if not isinstance(element, LiveElement):
            self.log.error(
                "{application!r} made {element!r}, not a LiveElement",
                application=self.application, element=element,
            )
            return None
        return element

    def showElement(self, element: LiveElement, render: bool = True) -> dict[str, Any]:
        """
        What the welcome frame says of C{element}: its markup (if C{render}),
        the URL of its widget module and the widget's class; its app's own
        files are served from now on.

        A template that is missing or fails to render is the application's
        bug, not the page's: retrying cannot help.  It is logged (a few
        lines, however many pages hit it; the connection counts the
        refusal as it tells the page), the element is
        detached at once (so an application that tracks its elements lets
        go of it), and the page is told once, to show and not retry.

        @raise ElementUnavailable: saying why, with no traceback for the page.
        """
        cls = type(element)
        self.apps.register(cls)
        what = f"jsModule {cls.jsModule!r}"
        try:
            module = widgetModule(cls)
            what = f"template {cls.template!r}"
            html = element.render(self.templates) if render else None
        except Exception as e:
            failure = Failure()
            self.logThrottle.warn(
                self.log, "element-unavailable",
                "the page of {element} cannot be shown: {what} failed: {kind}: {error}",
                element=cut(f"{cls.__module__}.{cls.__qualname__}"), what=cut(what),
                kind=type(e).__name__, error=cut(str(e), 300))
            problem = ElementUnavailable(
                f"the server's {cls.__name__} failed ({what}: {type(e).__name__}); "
                "the server's log says more")
            element._liveDetach(failure)
            raise problem from None
        return {"html": html, "module": module, "widget": cls.jsClass}

    def startSession(self, element: LiveElement, page: str = "/", ident: str | None = None) -> LiveSession:
        """
        A new session for C{element}, the page at C{page}'s; recorded in the
        session store unless it is one taken over (C{ident} given).
        """
        session = LiveSession(ident or secrets.token_urlsafe(16), element, self.settings,
                              self.reactor, self._ended)
        session.page = page
        session.metrics = self.metrics
        session.logThrottle = self.logThrottle
        session.coalescer = self.coalescer
        session.store = self.sessionStore
        self.sessions[session.ident] = session
        if ident is None:
            self.sessionStore.save(session)
        return session

    def adoptSession(self, ident: str, record: SessionRecord | None = None) -> Deferred:
        """
        Take over the session C{ident}, which another process had, if the
        session store has it (or as C{record} says: one this process's
        predecessor saved): make its element again for its page, restore
        the element's state, and wait for its streams to be ready.

        @return: a L{Deferred} firing with the L{LiveSession} (no page
            attached yet), or L{None} if there is no such session to take.
        """
        def adopted(record: SessionRecord | None) -> Any:
            if record is None or ident in self.sessions:
                return self.sessions.get(ident)
            try:
                element = self.makeElement(record.page)
            except LiveError as e:
                self.log.info("cannot take over session {ident}: {error}", ident=cut(ident[:6]),
                              error=cut(str(e)))
                return None
            if element is None:
                return None
            session = self.startSession(element, record.page, ident)
            session.adopted = True
            element._liveRestore(session, record.state)
            ready = gatherResults([stream.ready() for stream in session.streams()], consumeErrors=True)
            return ready.addCallback(lambda _: session)

        d = self.sessionStore.adopt(ident) if record is None else succeed(record)
        d.addCallback(adopted)
        return d

    def _sessionMovedAway(self, ident: str) -> None:
        session = self.sessions.get(ident)
        if session is not None:
            self.log.info("{session} moved to another server", session=session)
            session.moveAway()

    def _storeEpochChanged(self, epoch: str) -> None:
        # The pages here now are told at once; those away, when they come back.
        for session in list(self.sessions.values()):
            if session.connection is not None:
                session.connection.sendLiveFrame({"type": _wire.EPOCH, "epoch": epoch})

    def _sessionEnded(self, session: LiveSession) -> None:
        self.sessions.pop(session.ident, None)

    def connectionOpened(self, connection: LiveServerProtocol) -> None:
        self.connections[connection] = None

    def connectionClosed(self, connection: LiveServerProtocol) -> None:
        closed = self.connections.pop(connection, None)
        if closed is not None:
            closed.callback(None)

    def shutDown(self, timeout: float = 3.0, spread: float = 0.0, clock: Any = None) -> Deferred:
        """
        Drain: tell each page (its element's C{goingAway}) and close its
        connection with 1012 "service restart", the closes spread evenly
        over C{spread} seconds so that the pages do not all reconnect at
        once; fires when all have closed, or C{timeout} seconds after the
        last close was started.

        @param clock: what schedules the closes (the factory's reactor by
            default).
        """
        clock = self.reactor if clock is None else clock
        closing = []
        for connection, closed in list(self.connections.items()):
            if closed is None:
                self.connections[connection] = closed = Deferred()
            closing.append(closed)
        pages = list(self.connections)
        step = spread / len(pages) if pages and spread > 0 else 0.0
        for index, connection in enumerate(pages):
            if index == 0 or step == 0:
                connection.restart()
            else:
                clock.callLater(index * step, connection.restart)
        done = DeferredList(closing)
        done.addTimeout(spread + timeout, self.reactor)
        done.addErrback(lambda failure: None)
        return done
