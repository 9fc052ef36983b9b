"""
The WebSocket end of the runtime: one L{LiveServerProtocol} per page
connection, made by a L{LiveServerFactory} that knows the element factory.
"""

import secrets
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from jinja2 import Environment
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._element import LiveElement
from ._errors import LiveError, ProtocolError
from ._session import LiveSession

#: Seconds a new connection has to send its "hello".
HELLO_TIMEOUT = 10.0

#: WebSocket close codes the runtime uses (RFC 6455, section 7.4).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_SERVER_ERROR = 1011


class LiveServerProtocol(WebSocketServerProtocol):
    """
    Reads frames from one page, answers bad ones with an error reply, and
    hands good ones to the page's L{LiveSession}.
    """

    liveLog = Logger()
    session: LiveSession | None = None
    _helloTimeout: Any = None

    def onOpen(self) -> None:
        self._helloTimeout = self.factory.reactor.callLater(
            HELLO_TIMEOUT, self._closeForProtocolError, "no hello frame received"
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        frame: dict[str, Any] | None = None
        try:
            frame = _wire.decode(payload, isBinary)
            if self.session is None:
                self._hello(frame)
            else:
                self.session.receive(frame)
        except LiveError as e:
            self.refuse(None if frame is None else _wire.callId(frame), e)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._helloTimeout is not None and self._helloTimeout.active():
            self._helloTimeout.cancel()
        if self.session is not None:
            self.session.detach(
                Failure(ConnectionDone(f"WebSocket closed: code={code} reason={reason!r}"))
            )
            self.factory.sessionEnded(self.session)

    def sendLiveFrame(self, frame: dict[str, Any]) -> None:
        if self.state != self.STATE_OPEN:
            # The page is closing: nothing more can reach it, and onClose will
            # detach its session, failing its waiting calls with ElementDetached.
            # (Autobahn raises Disconnected here, which would break a fan-out.)
            return
        try:
            payload = _wire.encode(frame)
        except (TypeError, ValueError) as e:
            self.liveLog.failure("cannot encode {frame!r}", frame=frame)
            payload = _wire.encode(
                _wire.errorFrame(frame.get("id"), "ServerError", f"value cannot be sent as JSON: {e}")
            )
        self.sendMessage(payload, isBinary=False)

    def refuse(self, ident: int | None, error: BaseException) -> None:
        """
        Tell the page what was wrong with what it sent, and log it once.
        """
        self.liveLog.warn(
            "refused input from {peer}: {kind}: {error}",
            peer=self.peer,
            kind=type(error).__name__,
            error=error,
        )
        if self.state == self.STATE_OPEN:
            self.sendLiveFrame(_wire.errorFrameFor(ident, error))

    def _hello(self, frame: dict[str, Any]) -> None:
        if frame["type"] != _wire.HELLO:
            raise ProtocolError('the first frame must be "hello"')
        version = frame.get("version")
        if type(version) is not int or version != _wire.PROTOCOL_VERSION:
            self.refuse(None, ProtocolError(
                f"protocol version {version!r} is not supported; "
                f"this server speaks version {_wire.PROTOCOL_VERSION}"
            ))
            self._closeForProtocolError("unsupported protocol version")
            return
        self._helloTimeout.cancel()
        element = self.factory.makeElement()
        if element is None:
            self._closeWithCode(CLOSE_SERVER_ERROR, "the server could not create an element")
            return
        html = element.render(self.factory.templates) if frame.get("render", True) else None
        self.session = LiveSession(secrets.token_urlsafe(16), element, self.sendLiveFrame, self.refuse)
        self.sendLiveFrame({
            "type": _wire.WELCOME,
            "version": _wire.PROTOCOL_VERSION,
            "session": self.session.ident,
            "element": {"html": html, "module": element.jsModule, "widget": element.jsClass},
            "limits": {"maxFrameBytes": _wire.MAX_FRAME_BYTES},
        })
        self.factory.sessionStarted(self.session)
        element._liveAttach(self.session)

    def _closeForProtocolError(self, reason: str) -> None:
        self._closeWithCode(CLOSE_PROTOCOL_ERROR, reason)

    def _closeWithCode(self, code: int, reason: str) -> None:
        """
        Start the closing handshake with C{code}.  Autobahn's C{sendClose}
        accepts only 1000 and 3000-4999 (raising for 1002 and 1011, which
        are the protocol's own codes), so send the close frame the way
        Autobahn does when it fails a connection itself.
        """
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)


class LiveServerFactory(WebSocketServerFactory):
    """
    Makes one L{LiveServerProtocol} per page connection and one element per
    page, by calling C{elementFactory}.

    @ivar sessions: the sessions of the pages connected now.
    """

    protocol = LiveServerProtocol
    liveLog = Logger()

    def __init__(
        self,
        elementFactory: Callable[[], LiveElement],
        templates: Environment,
        reactor: Any = None,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.elementFactory = elementFactory
        self.templates = templates
        self.sessions: set[LiveSession] = set()
        # failByDrop=False: a connection Autobahn fails (a frame over the hard
        # limit: 1009; invalid UTF-8: 1007) is closed with its close code, as
        # docs/protocol.md says, instead of the TCP connection being dropped.
        self.setProtocolOptions(
            maxMessagePayloadSize=_wire.HARD_MAX_FRAME_BYTES, failByDrop=False
        )

    def makeElement(self) -> LiveElement | None:
        try:
            element = self.elementFactory()
        except Exception:
            self.liveLog.failure("element factory {factory!r} raised", factory=self.elementFactory)
            return None
        if not isinstance(element, LiveElement):
            self.liveLog.error(
                "element factory {factory!r} returned {element!r}, not a LiveElement",
                factory=self.elementFactory, element=element,
            )
            return None
        return element

    def sessionStarted(self, session: LiveSession) -> None:
        self.sessions.add(session)

    def sessionEnded(self, session: LiveSession) -> None:
        self.sessions.discard(session)
