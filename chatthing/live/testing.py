"""
A WebSocket client of the live protocol, for testing live applications
against a real server, as C{treq.testing} serves treq's users.

    client = await LiveTestClient.connect("ws://127.0.0.1:8080/live")
    await client.call("setUsername", "alice")
    await client.waitFor(lambda: client.calls("displayMessage"))

The client answers every call the server makes with C{null} (or with what
C{answer} returns) and records it, so a test can read the page's transcript.
"""

import json
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred

from ._wire import PROTOCOL_VERSION

#: Seconds a test waits for a condition before it fails.
DEFAULT_DEADLINE = 10.0


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(code, reason)


class LiveTestClient:
    """
    One connection to a live server, speaking the wire protocol as a page does.

    @ivar frames: every frame received, decoded, in order.
    @ivar closeCode: the WebSocket close code once closed, else L{None}.
    @ivar answer: called with C{(method, args)} for each server call; its
        return value is sent back as the call's result.
    """

    def __init__(self, reactor: Any = None) -> None:
        self.reactor = reactor or _reactor
        self.frames: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.closeCode: int | None = None
        self.closeReason: str | None = None
        self.isClosed = False
        self.welcome: dict[str, Any] | None = None
        self.answer: Callable[[str, list], Any] = lambda method, args: None
        self.protocol: _Protocol | None = None
        self._nextId = 0
        self._waiters: list[tuple[Callable[[], Any], Deferred]] = []
        self._connected: Deferred = Deferred()

    @classmethod
    async def connect(
        cls, url: str, hello: dict[str, Any] | None = None, origin: str | None = None,
        reactor: Any = None,
    ) -> "LiveTestClient":
        """
        Connect to C{url} and, unless C{hello} is C{False}, say hello and
        wait for the welcome.
        """
        client = cls(reactor)
        factory = WebSocketClientFactory(url, origin=origin)
        factory.protocol = _Protocol
        factory.client = client
        connectWS(factory)
        await client._withDeadline(client._connected, f"connecting to {url}")
        if hello is not False:
            client.send({"type": "hello", "version": PROTOCOL_VERSION, "render": False,
                         **(hello or {})})
            client.welcome = await client.nextFrame(lambda f: f["type"] == "welcome")
        return client

    # Sending

    def send(self, frame: Any) -> None:
        """
        Send C{frame} as JSON text.
        """
        self.sendRaw(json.dumps(frame).encode("utf-8"))

    def sendRaw(self, payload: bytes, isBinary: bool = False) -> None:
        """
        Send C{payload} as it is: for testing what the server does with bad frames.
        """
        assert self.protocol is not None
        self.protocol.sendMessage(payload, isBinary=isBinary)

    async def call(self, method: str, *args: Any) -> dict[str, Any]:
        """
        Call C{method} on the element; the answering C{result} or C{error} frame.
        """
        ident = self._nextId
        self._nextId += 1
        self.send({"type": "call", "id": ident, "method": method, "args": list(args)})
        return await self.nextFrame(
            lambda f: f["type"] in ("result", "error") and f.get("id") == ident,
            f"an answer to {method}()",
        )

    def close(self, code: int = 1000) -> None:
        if self.protocol is not None:
            self.protocol.sendClose(code)

    # Reading

    def calls(self, method: str | None = None) -> list[list[Any]]:
        """
        The arguments of each call the server made (to C{method}), in order.
        """
        return [
            f["args"] for f in self.frames
            if f.get("type") == "call" and (method is None or f.get("method") == method)
        ]

    def errors(self) -> list[dict[str, Any]]:
        """
        Every error frame received.
        """
        return [f for f in self.frames if f.get("type") == "error"]

    async def nextFrame(
        self, predicate: Callable[[dict], bool], what: str = "a frame",
        deadline: float = DEFAULT_DEADLINE,
    ) -> dict[str, Any]:
        """
        The first frame received, now or later, for which C{predicate} holds.
        """
        def found() -> dict[str, Any] | None:
            return next((f for f in self.frames if predicate(f)), None)

        return await self.waitFor(found, what, deadline)

    async def waitFor(
        self, condition: Callable[[], Any], what: str = "a condition",
        deadline: float = DEFAULT_DEADLINE,
    ) -> Any:
        """
        Wait until C{condition()} is true (checked on each frame and on close),
        returning its value; fail with C{TimeoutError} after C{deadline} seconds.
        """
        value = condition()
        if value:
            return value
        d: Deferred = Deferred()
        self._waiters.append((condition, d))
        return await self._withDeadline(d, what, deadline)

    async def closed(self, deadline: float = DEFAULT_DEADLINE) -> int | None:
        """
        Wait for the connection to close; the close code.
        """
        await self.waitFor(lambda: self.isClosed, "the connection to close", deadline)
        return self.closeCode

    # Protocol callbacks

    def _opened(self, protocol: _Protocol) -> None:
        self.protocol = protocol
        self._connected.callback(None)

    def _received(self, payload: bytes, isBinary: bool) -> None:
        self.raw.append(payload)
        frame = json.loads(payload)
        self.frames.append(frame)
        if frame.get("type") == "call" and isinstance(frame.get("id"), int):
            value = self.answer(frame["method"], frame["args"])
            self.send({"type": "result", "id": frame["id"], "value": value})
        self._check()

    def _closed(self, code: int | None, reason: str | None) -> None:
        self.closeCode, self.closeReason = code, reason
        self.protocol = None
        if not self._connected.called:
            self._connected.errback(ConnectionError(f"connection failed: {code} {reason}"))
        self.isClosed = True
        self._check()

    def _check(self) -> None:
        for entry in list(self._waiters):
            condition, d = entry
            value = condition()
            if value and entry in self._waiters:
                self._waiters.remove(entry)
                d.callback(value)

    async def _withDeadline(self, d: Deferred, what: str, deadline: float = DEFAULT_DEADLINE) -> Any:
        timer = self.reactor.callLater(
            deadline, lambda: d.called or d.errback(TimeoutError(f"waited {deadline}s for {what}"))
        )
        try:
            return await d
        finally:
            if timer.active():
                timer.cancel()
            self._waiters = [(c, w) for c, w in self._waiters if w is not d]
