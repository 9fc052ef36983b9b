"""
L{PageFrames}: what a session does with the frames its page sends, each
already decoded and checked (L{_wire.decode}): run a call of an exposed
method once (a re-sent one is dropped), answer the server's own calls,
take acks, and refuse what breaks the protocol.

A base class of L{LiveSession}, apart so that each module has one job.
"""

import inspect
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._connection import PageConnection
from ._element import LiveElement
from ._errors import LiveError, NoSuchMethod, ProtocolError, RemoteError, TooManyPendingCalls
from ._expose import checkArguments, exposedMethod
from ._logsafe import LogThrottle, cut
from ._metrics import LiveMetrics
from ._replay import AckSchedule, ReplayBuffer
from ._settings import LiveSettings
from ._stream import runningCall

#: The frames with which a page answers the server's calls.
_ANSWERS = frozenset({_wire.RESULT, _wire.ERROR})


class PageFrames:
    """
    Acts on the frames of one page for its session (L{LiveSession}, which
    sets every attribute named here).
    """

    ident: str
    element: LiveElement
    settings: LiveSettings
    metrics: LiveMetrics
    log: Logger
    logThrottle: LogThrottle | None
    connection: PageConnection | None
    moved: bool
    _sent: ReplayBuffer
    _receivedSeq: int
    _acks: AckSchedule
    _awaitingAnswer: dict[int, Deferred]
    _running: int
    #: The answers this session's predecessor (C{--state-file}) gave to
    #: calls its page had not got, by call id (L{answerAgain}); L{None}
    #: for any other session (a class default: no room taken per page).
    _answersAgain: dict[int, dict[str, Any]] | None = None

    def send(self, frame: dict[str, Any]) -> None:
        """
        Number C{frame}, keep it for replay, and send it (L{LiveSession}).
        """
        raise NotImplementedError()

    def receive(self, frame: dict[str, Any]) -> None:
        """
        Act on one frame from the page given as a decoded JSON object (for
        in-process callers and tests): checked by L{_wire.fromObject}, then
        as L{receiveFrame}.
        """
        self.receiveFrame(_wire.fromObject(frame))

    def receiveFrame(self, frame: _wire.Frame) -> None:
        """
        Act on one frame from the page, already checked by L{_wire.decode},
        unless it is a re-sent one already acted on.
        """
        if isinstance(frame, _wire.Ack):
            self._sent.ack(frame.seq)
            return
        if isinstance(frame, _wire.Leave):
            return  # the connection closes and ends the session
        if isinstance(frame, _wire.Hello) or (
                isinstance(frame, _wire.Malformed) and frame.type == _wire.HELLO):
            raise ProtocolError('"hello" was already received on this connection')
        if isinstance(frame, _wire.Unexpected):
            raise ProtocolError(f'unknown frame type "{frame.type}"')
        seq = frame.seq
        if seq is not None:
            if seq <= self._receivedSeq:
                if self._answersAgain is not None and isinstance(frame, _wire.Call):
                    self.answerAgain(frame.id)
                return  # re-sent after a reconnection; already run
            self._receivedSeq = seq
            self._acks.received()
        if isinstance(frame, _wire.Malformed):
            if (self.moved and not frame.badSeq and frame.type in _ANSWERS
                    and frame.id not in self._awaitingAnswer):
                return  # an answer to a call of the process this session moved from
            raise frame.error
        if isinstance(frame, _wire.Call):
            token = runningCall.set(f"{self.ident}:{seq}" if seq is not None else None)
            try:
                self._runCall(frame)
            finally:
                runningCall.reset(token)
        elif self.moved and frame.id not in self._awaitingAnswer:
            # An answer to a call of the process this session moved from.
            return
        elif isinstance(frame, _wire.Result):
            self._answer(frame.id).callback(frame.value)
        else:
            self._answer(frame.id).errback(RemoteError(frame.name, frame.message))

    def answerAgain(self, ident: int) -> None:
        """
        The page sent again the call C{ident}, which this session's
        predecessor ran (or was running) before it stopped, and never got
        its answer (the drain closed the connection first): answer it with
        what the predecessor answered or, if it had no answer yet, with a
        C{ServerRestarted} error -- never run it twice.
        """
        assert self._answersAgain is not None
        frame = self._answersAgain.pop(ident, None)
        if frame is None:
            frame = _wire.errorFrame(ident, "ServerRestarted", "the server restarted before "
                                     "answering this call; it may or may not have been done")
        self.send(frame)

    def _acknowledge(self) -> None:
        if self.connection is not None:
            self.connection.sendLiveFrame({"type": _wire.ACK, "seq": self._receivedSeq})

    def _answer(self, ident: int) -> Deferred:
        d = self._awaitingAnswer.pop(ident, None)
        if d is None:
            raise ProtocolError(f"no call with id {ident} is waiting for an answer")
        return d

    def _runCall(self, frame: _wire.Call) -> None:
        ident, name, args = frame.id, frame.method, frame.args
        method = exposedMethod(self.element, name)
        self.metrics.callReceived(name if method is not None else None)
        if method is None:
            raise NoSuchMethod(f"{type(self.element).__name__} has no exposed method {name!r}")
        checkArguments(method, args)
        if self._running >= self.settings.maxPendingCalls:
            raise TooManyPendingCalls(
                f"{self._running} calls are still running; wait for their answers"
            )
        self._running += 1
        d = maybeDeferred(method, *args)
        d.addCallback(_awaitCoroutine)
        d.addBoth(self._callDone)
        d.addCallbacks(
            lambda value: self.send(_wire.resultFrame(ident, value)),
            lambda failure: self._callFailed(ident, name, failure),
        )

    def _callDone(self, result: Any) -> Any:
        self._running -= 1
        return result

    def _callFailed(self, ident: int, name: str, failure: Failure) -> None:
        if isinstance(failure.value, LiveError):
            # A deliberate refusal, from the runtime or the application: the
            # page is told, the log gets one line and no traceback.
            self.refuse(ident, failure.value)
        else:
            self.log.failure("{method}() raised", failure, method=name)
            self.metrics.refused("ServerError")
            self.send(_wire.errorFrameFor(ident, failure.value))

    def refuse(self, ident: int | None, error: BaseException, quiet: bool = False) -> None:
        """
        Answer the frame C{error} was about with it, and log it once (unless
        C{quiet}).
        """
        if not quiet:
            kind = type(error).__name__
            line = "refused input from {session}: {kind}: {error}"
            fields = {"session": self, "kind": kind, "error": cut(str(error))}
            if self.logThrottle is None:
                self.log.warn(line, **fields)
            else:
                self.logThrottle.warn(self.log, kind, line, **fields)
        self.metrics.refused(type(error).__name__)
        self.send(_wire.errorFrameFor(ident, error))


def _awaitCoroutine(result: Any) -> Any:
    if inspect.iscoroutine(result):
        return ensureDeferred(result)
    return result
