"""
L{LiveSession}: one element's conversation with its page, which outlives
any one connection.  What it does with the frames the page sends is its
base class's job (L{PageFrames}, in C{_receiving}).
"""

import json
from typing import Any, Callable, Iterable

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._connection import PageConnection
from ._element import LiveElement
from ._errors import ElementDetached, SessionMoved
from ._logsafe import LogThrottle
from ._metrics import UNMEASURED, LiveMetrics
from ._receiving import PageFrames
from ._replay import AckSchedule, ReplayBuffer, ReplayOverflow
from ._sending import WriteCoalescer
from ._sessionstore import LocalSessions, SessionStore
from ._settings import LiveSettings
from ._stream import Stream


#: The calls awaiting an answer of every session that has made none (read
#: only: a session makes its own table for its first call).
_NO_CALLS: dict[int, Deferred] = {}


class LiveSession(PageFrames):
    """
    Binds one L{LiveElement} to its page across reconnections.

    Frames the session sends directly (calls, results, errors) are numbered
    and kept in a L{ReplayBuffer} until the page acknowledges them; frames of
    the L{Stream}s the element subscribes to are numbered by their stream.
    The page numbers its frames too, and the session runs each number once.
    So when a page reconnects within the grace period and says what it has
    seen, it gets exactly what it missed, and re-sent frames are not run
    twice.

    The grace period is a budget, not a clock that each resume restarts:
    the time a session spends with no page counts against it, and the time
    a page stays connected pays it back, second for second.  So a page that
    drops and resumes over and over without staying connected (or a client
    cycling resumes to keep sessions it does not use) sees its session end
    after one grace period away in all; an honest page on a flaky network,
    connected longer than it is away, never runs out.

    @ivar connection: the page's connection now, or L{None} while it is away.
    @ivar graceSpent: seconds of the grace period used up by earlier times
        away (not yet paid back by time connected).
    """

    log = Logger()
    metrics: LiveMetrics = UNMEASURED
    #: Where the session is recorded for other processes (set by the factory).
    store: SessionStore = LocalSessions()
    #: Whether this process is taking the session over from another one,
    #: and whether the page has resumed it here.
    adopted = False
    moved = False
    #: The path of the session's page.
    page = "/"
    #: Whether the session was saved by this process's predecessor when
    #: it stopped (C{--state-file}): its page is told, in C{resumed}.
    restarted = False
    #: Keeps refusals a page can cause at will to a few log lines (set by
    #: the factory: one for all its sessions).
    logThrottle: LogThrottle | None = None
    #: Gathers the frames of the session's streams with those of the other
    #: pages, once a room (set by the factory); without one (a session made
    #: alone, in a test) each frame is handed to the connection as it is
    #: emitted (L{deliverStream}).
    coalescer: WriteCoalescer | None = None

    def __init__(
        self,
        ident: str,
        element: LiveElement,
        settings: LiveSettings,
        reactor: Any,
        ended: Callable[["LiveSession"], None],
    ) -> None:
        self.ident = ident
        self.element = element
        self.settings = settings
        self.reactor = reactor
        self._connection: PageConnection | None = None
        self.ended = False
        self._onEnded = ended
        self._sent = ReplayBuffer(settings.maxReplayFrames)
        self._receivedSeq = 0
        self._acks = AckSchedule(reactor, self._acknowledge)
        self._graceTimer: Any = None
        self.graceSpent = 0.0
        self._since = reactor.seconds()
        self._nextCallId = 0
        # The server's calls waiting for the page's answer: most pages are
        # never called, so they share one empty table until they are.
        self._awaitingAnswer: dict[int, Deferred] = _NO_CALLS
        self._running = 0
        self._streams: dict[str, tuple[Stream, int]] = {}

    def __repr__(self) -> str:
        return f"<LiveSession {self.ident[:6]} of {self.element!r}>"

    @property
    def connection(self) -> PageConnection | None:
        return self._connection

    @connection.setter
    def connection(self, connection: PageConnection | None) -> None:
        # The streams that send to the page's connection keep it, so that
        # a room's pass over its pages reads no session (L{StreamRun}).
        self._connection = connection
        for stream, _ in self._streams.values():
            stream.pageMoved(self, connection)

    # Connections come and go

    def attach(self, connection: PageConnection) -> None:
        """
        Start talking to the page through C{connection}.
        """
        if self.connection is None:
            # The time away counts against the grace period.
            now = self.reactor.seconds()
            self.graceSpent += now - self._since
            self._since = now
        self.connection = connection
        if self.coalescer is not None:
            # What its streams emitted this turn is in what it is sent
            # as it resumes.
            self.coalescer.skip(self)
        if self._graceTimer is not None and self._graceTimer.active():
            self._graceTimer.cancel()
        self._graceTimer = None

    def resume(self, connection: PageConnection, seenSeq: int, offsets: dict[str, int]) -> str | None:
        """
        Carry on with the page through C{connection}, sending it everything
        after frame C{seenSeq} and after each stream's offset in C{offsets}.

        @return: L{None} if resumed, else why the session cannot be resumed.
        """
        if self.adopted and not self.moved:
            return self.resumeMoved(connection, seenSeq, offsets)
        missedFrames = self._sent.since(seenSeq)
        if missedFrames is None:
            return f"frame {seenSeq} is not one this session can replay from"
        missedStreams = []
        for name, (stream, subscribedAt) in self._streams.items():
            missed = stream.since(offsets.get(name, subscribedAt))
            if missed is None:
                return f"too much of {name} was missed to replay it"
            missedStreams.append(missed)
        self._sent.ack(seenSeq)
        if self.connection is not None:
            self.connection.replaced()
        self.attach(connection)
        self._sendResumed(connection, {"type": _wire.RESUMED, "session": self.ident,
                                       "seq": self._receivedSeq}, missedFrames, missedStreams)
        return None

    def resumeMoved(self, connection: PageConnection, seenSeq: int, offsets: dict[str, int]) -> str | None:
        """
        Carry on, through C{connection}, with a session that another process
        had (this one has just made its element again): send the page what
        it missed of each stream after its offset in C{offsets}, and number
        the frames sent from now on after C{seenSeq}, the last it had.  What
        the other process sent the page directly and the page did not get
        is lost with it; so the page is asked to send again every call
        still waiting for an answer ("rerun"), and they run here.

        @return: L{None} if resumed, else why the session cannot be resumed.
        """
        missedStreams = []
        for name, (stream, subscribedAt) in self._streams.items():
            # A stream the page has had nothing from: only what comes next.
            offset = offsets.get(name, stream.offset)
            if offset > stream.offset and not stream.offset:
                # A stream of this process that has said nothing yet (the
                # element's own): it takes up the numbering where the
                # page's left off.
                stream.skipTo(offset)
            missed = stream.since(offset)
            if missed is None:
                return f"too much of {name} was missed to replay it"
            missedStreams.append(missed)
        self.moved = True
        self._sent.startAfter(seenSeq)
        self.attach(connection)
        resumed: dict[str, Any] = {"type": _wire.RESUMED, "session": self.ident,
                                   "seq": self._receivedSeq, "rerun": True}
        if self.restarted:
            resumed["restarted"] = True
        self._sendResumed(connection, resumed, [], missedStreams)
        return None

    def _sendResumed(self, connection: PageConnection, resumed: dict[str, Any],
                     missedFrames: list[bytes], missedStreams: list) -> None:
        if self.store.epoch is not None:
            resumed["epoch"] = self.store.epoch
        connection.sendLiveFrame(resumed)
        for payload in missedFrames:
            connection.sendPayload(payload)
        for messages in missedStreams:
            for message in messages:
                connection.sendPrepared(message)

    @property
    def receivedSeq(self) -> int:
        """
        The page's numbered frames run here, up to this one.
        """
        return self._receivedSeq

    def restartAfter(self, receivedSeq: int, answers: Iterable[dict[str, Any]] = ()) -> None:
        """
        This session was saved by this process's predecessor, which had run
        the page's frames up to C{receivedSeq}: run none of them again
        (a call of those the page sends again gets its answer from
        C{answers}, L{answersNotReceived} of the predecessor's session: see
        L{answerAgain}), and tell the page, when it resumes, that the
        server restarted.
        """
        self._receivedSeq = receivedSeq
        self._answersAgain = {answer["id"]: answer for answer in answers}
        self.restarted = True

    def answersNotReceived(self) -> list[dict[str, Any]]:
        """
        The answers to the page's calls that it has not acknowledged (a
        drain closed its connection before they reached it), as frames
        without their numbers: saved with the session (C{--state-file}) so
        that the successor gives them when the page sends the calls again.
        """
        answers = []
        for payload in self._sent.since(self._sent.ackedSeq) or []:
            frame = json.loads(payload)
            if frame.get("type") in (_wire.RESULT, _wire.ERROR) and type(frame.get("id")) is int:
                del frame["seq"]
                answers.append(frame)
        return answers

    def awaitPage(self) -> None:
        """
        No page is attached yet: give one L{LiveSettings.gracePeriod}
        seconds to come.
        """
        if self.connection is None and not self.ended and self._graceTimer is None:
            self._awaitReturn(Failure(ConnectionLost("no page came back")))

    def _awaitReturn(self, reason: Failure) -> None:
        """
        The page is away: end the session with C{reason} once what is left
        of its grace period has run out.
        """
        left = max(0.0, self.settings.gracePeriod - self.graceSpent)
        self._graceTimer = self.reactor.callLater(left, self.end, reason)

    def moveAway(self) -> None:
        """
        Another process has taken this session over: let go of it here,
        without ending it for the application (the element is told with a
        L{SessionMoved} reason).
        """
        if self.connection is not None:
            self.connection.expel("the session moved to another server")
            self.connection = None
        self.end(Failure(SessionMoved("the session moved to another server")))

    def stateChanged(self) -> None:
        """
        The element's state has changed: record it for other processes.
        """
        if not self.ended:
            self.store.save(self)

    def connectionLost(self, connection: PageConnection, reason: Failure, intentional: bool) -> None:
        """
        C{connection} has closed: end the session if the page left on purpose,
        else give it L{LiveSettings.gracePeriod} seconds to come back.
        """
        if connection is not self.connection:
            return
        self.connection = None
        # The time connected pays back what earlier times away used up.
        now = self.reactor.seconds()
        self.graceSpent = max(0.0, self.graceSpent - (now - self._since))
        self._since = now
        if intentional:
            self.end(reason)
        elif not self.ended:
            self._awaitReturn(reason)

    def end(self, reason: Failure) -> None:
        """
        The page has gone for good: fail the calls still waiting for it,
        leave the streams, and tell the element.
        """
        if self.ended:
            return
        self.ended = True
        self._logEnd(reason)
        if self.connection is not None:
            # Nothing may run in a session that has ended: a connection
            # still attached (its page's resume was refused on a newer one)
            # is closed, not left to speak for it.
            connection, self.connection = self.connection, None
            connection.replaced()
        if not reason.check(SessionMoved):
            self.store.forget(self)
        self._acks.cancel()
        if self._graceTimer is not None and self._graceTimer.active():
            self._graceTimer.cancel()
        for stream, _ in self._streams.values():
            stream.unsubscribe(self)
        waiting, self._awaitingAnswer = self._awaitingAnswer, _NO_CALLS
        for d in waiting.values():
            d.errback(ElementDetached("the page went away before answering"))
        self.element._liveDetach(reason)
        self._onEnded(self)

    def _logEnd(self, reason: Failure) -> None:
        why = reason.getErrorMessage()
        if self._graceTimer is not None and not self._graceTimer.active():
            why = f"not back within the {self.settings.gracePeriod:g}s grace period ({why})"
            if self.graceSpent > 0:
                why += (f", {self.graceSpent:.1f}s of which were used up by earlier times "
                        "away not paid back by time connected")
        self.log.info("{session} ended: {why}", session=self, why=why)

    # Sending

    def subscribe(self, stream: Stream) -> None:
        """
        Send the page every call C{stream} emits from now on.
        """
        if stream.name not in self._streams:
            self._streams[stream.name] = (stream, stream.offset)
            stream.metrics = self.metrics
            if self.coalescer is not None:
                stream.subscribePage(self, self.coalescer)
            else:
                stream.subscribe(self)
        if stream.fallback is not None:
            self.subscribe(stream.fallback)

    def streams(self) -> list[Stream]:
        """
        The streams the page is subscribed to.
        """
        return [stream for stream, _ in self._streams.values()]

    def unsubscribe(self, stream: Stream) -> None:
        if self._streams.pop(stream.name, None) is not None:
            stream.unsubscribe(self)
        if stream.fallback is not None:
            self.unsubscribe(stream.fallback)

    def deliverStream(self, stream: Stream, offset: int, message: PreparedMessage) -> None:
        if self.connection is not None:
            self.connection.sendPrepared(message)

    def send(self, frame: dict[str, Any]) -> None:
        """
        Number C{frame}, keep it for replay, and send it if the page is here.
        """
        if self.ended:
            return
        frame["seq"] = self._sent.nextSeq()
        try:
            payload = _wire.encode(frame)
        except (TypeError, ValueError) as e:
            self.log.failure("cannot send {frame!r} as JSON", frame=frame)
            payload = _wire.encode({
                **_wire.errorFrame(frame.get("id"), "ServerError", f"the answer cannot be sent as JSON: {e}"),
                "seq": frame["seq"],
            })
        self._keepAndSend(payload)

    def notifyEncoded(self, method: str, argsJSON: bytes) -> None:
        """
        L{notify}, with C{args} encoded already (C{_wire.encode} of the
        list), so that a value sent to many pages is encoded once.
        """
        if not self.ended:
            self._keepAndSend(_wire.notifyPayload(method, argsJSON, self._sent.nextSeq()))

    def _keepAndSend(self, payload: bytes) -> None:
        """
        Keep the numbered frame C{payload} for replay, and send it if the
        page is here.
        """
        try:
            self._sent.add(payload)
        except ReplayOverflow as e:
            self.log.warn("{session} is too far behind: {error}", session=self, error=e)
            if self.connection is not None:
                self.connection.expel("too many frames unacknowledged")
                self.connection = None
            self.end(Failure(e))
            return
        self.metrics.sent()
        if self.connection is not None:
            self.connection.sendPayload(payload)

    def notify(self, method: str, args: tuple) -> None:
        """
        Call C{method} on the page's widget, wanting no answer: kept until
        the page acknowledges it, like a call.
        """
        self.send(_wire.notifyFrame(method, args))

    def callRemote(self, method: str, args: tuple) -> Deferred:
        if self.ended:
            return fail(ElementDetached(f"cannot call {method}(): the page has gone away"))
        ident = self._nextCallId
        self._nextCallId += 1
        d: Deferred = Deferred()
        if self._awaitingAnswer is _NO_CALLS:
            self._awaitingAnswer = {}
        self._awaitingAnswer[ident] = d
        self.send(_wire.callFrame(ident, method, args))
        return d
