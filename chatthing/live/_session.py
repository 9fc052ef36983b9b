"""
L{LiveSession}: the calls in flight between one element and its page.
"""

import inspect
from typing import Any, Callable

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._element import LiveElement
from ._errors import ElementDetached, LiveError, NoSuchMethod, ProtocolError, RemoteError
from ._expose import checkArguments, exposedMethod


class LiveSession:
    """
    Binds one L{LiveElement} to one page's connection: numbers the element's
    remote calls and matches the page's answers to them, and runs the page's
    calls on the element's exposed methods.

    @ivar send: sends one frame to the page.
    @ivar refuse: answers a bad frame with an error reply and a log line.
    """

    log = Logger()

    def __init__(
        self,
        ident: str,
        element: LiveElement,
        send: Callable[[dict], None],
        refuse: Callable[[int | None, BaseException], None],
    ) -> None:
        self.ident = ident
        self.element = element
        self.send = send
        self.refuse = refuse
        self._nextCallId = 0
        self._awaitingAnswer: dict[int, Deferred] = {}
        self._detached = False

    def callRemote(self, method: str, args: tuple) -> Deferred:
        ident = self._nextCallId
        self._nextCallId += 1
        d: Deferred = Deferred()
        self._awaitingAnswer[ident] = d
        self.send(_wire.callFrame(ident, method, args))
        return d

    def receive(self, frame: dict[str, Any]) -> None:
        """
        Act on one frame from the page.
        """
        kind = frame["type"]
        if kind == _wire.CALL:
            self._runCall(frame)
        elif kind == _wire.RESULT:
            self._answer(frame).callback(frame.get("value"))
        elif kind == _wire.ERROR:
            # Parse before taking the call off the waiting list: a malformed
            # answer is refused, and its call stays waiting (and fails with
            # ElementDetached if the page goes) instead of being lost.
            error = RemoteError(*_wire.parseError(frame))
            self._answer(frame).errback(error)
        elif kind == _wire.HELLO:
            raise ProtocolError('"hello" was already received on this connection')
        else:
            raise ProtocolError(f'unknown frame type "{kind}"')

    def _answer(self, frame: dict[str, Any]) -> Deferred:
        ident = _wire.requireCallId(frame)
        d = self._awaitingAnswer.pop(ident, None)
        if d is None:
            raise ProtocolError(f"no call with id {ident} is waiting for an answer")
        return d

    def _runCall(self, frame: dict[str, Any]) -> None:
        ident, name, args = _wire.parseCall(frame)
        method = exposedMethod(self.element, name)
        if method is None:
            raise NoSuchMethod(f"{type(self.element).__name__} has no exposed method {name!r}")
        checkArguments(method, args)
        d = maybeDeferred(method, *args)
        d.addCallback(_awaitCoroutine)
        d.addCallbacks(
            lambda value: self._reply(_wire.resultFrame(ident, value)),
            lambda failure: self._callFailed(ident, name, failure),
        )

    def _reply(self, frame: dict[str, Any]) -> None:
        if not self._detached:
            self.send(frame)

    def _callFailed(self, ident: int, name: str, failure: Failure) -> None:
        if self._detached:
            return
        if isinstance(failure.value, LiveError):
            # A deliberate refusal, from the runtime or the application: the
            # page is told, the log gets one line and no traceback.
            self.refuse(ident, failure.value)
        else:
            self.log.failure("{method}() raised", failure, method=name)
            self.send(_wire.errorFrameFor(ident, failure.value))

    def detach(self, reason: Failure) -> None:
        """
        The page has gone: fail the calls still waiting for it, and tell the
        element.
        """
        if self._detached:
            return
        self._detached = True
        waiting, self._awaitingAnswer = self._awaitingAnswer, {}
        for d in waiting.values():
            d.errback(ElementDetached("the page went away before answering"))
        self.element._liveDetach(reason)


def _awaitCoroutine(result: Any) -> Any:
    if inspect.iscoroutine(result):
        return ensureDeferred(result)
    return result

