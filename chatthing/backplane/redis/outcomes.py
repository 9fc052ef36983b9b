"""
L{Outcomes}: what became of the publications of one process on one shared
stream, told to their senders only once it is known.

Redis answers a publication (taken, or refused past its deadline), or the
answer does not come in time while Redis is hung (then Redis refuses it if
it ever runs it: its deadline has passed), or the connection is lost before
the answer: then Redis may have taken it (and kept it, with
C{appendonly yes}) or not.  That last outcome is settled by what Redis
holds: the publication is taken if its origin comes back on the stream,
and refused if a catch-up started after the loss reads the stream without
it (the Redis that had the command is gone, and will not run it later).
"""

from collections import OrderedDict
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import BackplaneDown
from .watchdog import WATCH_INTERVAL

#: Seconds after it is sent that a publication is still taken by Redis
#: (L{lua.PUBLISH} checks it on Redis's clock); its sender is told it was
#: not sent after this and L{ANSWER_MARGIN}, if Redis is hung.
PUBLISH_DEADLINE = 1.0
ANSWER_MARGIN = 0.5
PUBLISH_TIMEOUT = PUBLISH_DEADLINE + ANSWER_MARGIN

#: Seconds a publication whose connection was lost before its answer waits
#: to be settled by a catch-up; past that, its sender is told it was not
#: sent (and a later sight of it is logged).
UNSETTLED_TIMEOUT = 5.0

#: What a publication's answer is taken for when its connection was lost
#: before it came, for an owner that settles such publications itself
#: (L{Outcomes.settlesLost}: L{chatthing.backplane.redis.durable}).
ANSWER_LOST = "answer lost"

#: How many of this process's origins delivered lately are remembered.
_SEEN = 1000


class Connected(Protocol):
    """
    What L{Outcomes} asks of a L{chatthing.backplane.redis.RedisConnection}.
    """

    reactor: Any
    proc: str
    connected: bool


class Outcomes:
    """
    The outcomes of one stream's publications from this process.
    """

    log = Logger()

    def __init__(self, connection: Connected, stream: object) -> None:
        self.connection = connection
        self.stream = stream
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._unsettled: dict[str, tuple[Deferred, int]] = {}
        self._told: OrderedDict[str, None] = OrderedDict()
        self._catchUps = 0
        #: Whether a publication whose connection was lost before its
        #: answer is answered L{ANSWER_LOST} (its owner settles it), rather
        #: than settled here by the next catch-up.
        self.settlesLost = False

    def awaitAnswer(self, answer: Deferred, origin: str) -> Deferred:
        """
        A L{Deferred} firing once the publication C{origin} was taken (with
        Redis's answer), or failing with L{BackplaneDown} once it will not
        be.
        """
        outcome: Deferred = Deferred()
        reactor = self.connection.reactor

        def settle(result: Any) -> None:
            if timer[0].active():
                timer[0].cancel()
            if outcome.called:
                if not isinstance(result, Failure):
                    self._published(origin)
            elif isinstance(result, Failure) and result.check("txredisapi.ConnectionError"):
                if self.settlesLost:
                    outcome.callback(ANSWER_LOST)
                else:
                    self._unsettle(origin, outcome)
            else:
                outcome.callback(result)

        def check() -> None:
            if outcome.called:
                return
            if self.connection.connected:
                timer[0] = reactor.callLater(WATCH_INTERVAL, check)
            else:
                self._refuse(origin, outcome, f"no answer within {PUBLISH_TIMEOUT} s")

        timer = [reactor.callLater(PUBLISH_TIMEOUT, check)]
        answer.addBoth(settle)
        return outcome

    def _unsettle(self, origin: str, outcome: Deferred) -> None:
        if origin in self._seen:
            outcome.callback(None)
            return
        self._unsettled[origin] = (outcome, self._catchUps)

        def late() -> None:
            if self._unsettled.get(origin, (None,))[0] is outcome:
                del self._unsettled[origin]
                self._refuse(origin, outcome, "the connection was lost before its answer")

        self.connection.reactor.callLater(UNSETTLED_TIMEOUT, late)

    def _refuse(self, origin: str, outcome: Deferred, why: str) -> None:
        self.told(origin)
        outcome.errback(BackplaneDown(why))

    def told(self, origin: str) -> None:
        """
        The sender of C{origin} was told it was not sent: seeing it later is
        an error, logged.
        """
        self._remember(self._told, origin)

    def _published(self, origin: str) -> None:
        if origin in self._told:
            self.log.error("{stream}: {origin} was published after its sender was told it was not",
                           stream=self.stream, origin=origin)

    def seen(self, origin: str) -> None:
        """
        An entry published as C{origin} came on the stream.
        """
        if not origin.startswith(self.connection.proc + "/"):
            return
        self._remember(self._seen, origin)
        unsettled = self._unsettled.pop(origin, None)
        if unsettled is not None:
            unsettled[0].callback(None)
        else:
            self._published(origin)

    def catchUpStarted(self) -> int:
        """
        A catch-up starts; what it returns is for L{caughtUp}.
        """
        self._catchUps += 1
        return self._catchUps

    def caughtUp(self, started: int) -> None:
        """
        The catch-up numbered C{started} read the stream: a publication
        unsettled before it started, and not on the stream, never will be.
        """
        for origin, (outcome, at) in list(self._unsettled.items()):
            if at < started:
                del self._unsettled[origin]
                self._refuse(origin, outcome, "Redis does not have it")

    @staticmethod
    def _remember(origins: OrderedDict[str, None], origin: str) -> None:
        origins[origin] = None
        while len(origins) > _SEEN:
            origins.popitem(last=False)
