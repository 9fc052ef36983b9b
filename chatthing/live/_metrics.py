"""
L{LiveMetrics}: what the runtime counts, in a Prometheus registry of its
own, one per L{LiveServerFactory} (so one per L{LiveSite}), never
C{prometheus_client}'s global one: several sites in one process keep
their counts apart.

The runtime knows nothing about the application; an application adds its
own numbers to the same registry with L{LiveMetrics.addGauge} (or any
C{prometheus_client} metric with C{registry=metrics.registry}).  The site
offers its metrics to the application at start: its
L{ILiveApplication.registerMetrics} is called once with the site's
L{LiveMetrics} (a plain element factory's adapter adds nothing)::

    @implementer(ILiveApplication)
    class ChatRoom:
        def registerMetrics(self, metrics):
            metrics.addGauge("chat_users", "Users logged in.", lambda: len(self.users))

Everything on the hot path is an increment of a child bound in advance: no
label lookup per frame or per recipient.
"""

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.web.resource import Resource
from twisted.web.server import Request

#: The label given to calls of methods that are not exposed (so a page
#: cannot make up label values without limit).
OTHER_METHOD = "other"

#: Outcomes of a page's attempt to resume its session.
RESUMED = "resumed"
EXPIRED = "expired"
UNREPLAYABLE = "unreplayable"

#: Buckets of the fan-out histogram, in seconds: from 10 microseconds (a
#: stream with a handful of pages) to a second (something is very wrong).
FANOUT_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class LiveMetrics:
    """
    The runtime's counters and gauges, and the registry that holds them.

    @ivar registry: the C{CollectorRegistry} that C{/metrics} exposes.
    """

    def __init__(self, connections: Callable[[], float] = lambda: 0,
                 sessions: Callable[[], float] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.addGauge("live_connections", "WebSocket connections open now.", connections)
        self.addGauge("live_sessions",
                      "Sessions not ended: pages connected, and pages away within their "
                      "grace period.", sessions)
        self._calls = Counter(
            "live_calls_received", "Calls received from pages, by method (methods "
            f"that are not exposed count as {OTHER_METHOD!r}); re-sent calls are not counted twice.",
            ["method"], registry=r)
        self._callsByMethod = _ByLabel(self._calls, OTHER_METHOD)
        deliveries = Counter(
            "live_deliveries", "Frames sent to pages, counted once each when sent (replays "
            "after a resume are not counted again): direct (a session's calls, results and "
            "errors) and stream (one for each page subscribed to a stream, per call emitted).",
            ["kind"], registry=r)
        self._direct = deliveries.labels("direct")
        self._stream = deliveries.labels("stream")
        resumes = Counter(
            "live_resumes", f"Pages that tried to resume their session, by outcome: {RESUMED}; "
            f"{EXPIRED} (the session had ended, or is unknown to this server); {UNREPLAYABLE} "
            "(too much was missed to replay it).", ["outcome"], registry=r)
        self._resumes = {outcome: resumes.labels(outcome) for outcome in (RESUMED, EXPIRED, UNREPLAYABLE)}
        self._errors = Counter(
            "live_errors", "Frames and calls refused with an error reply, by the error's class "
            "name: the runtime's (ProtocolError, FrameTooLarge, NoSuchMethod, BadArguments, "
            "RateLimited, TooManyPendingCalls...) and the application's own refusals; "
            "ServerError for exposed methods that raised something else.",
            ["kind"], registry=r)
        self._errorsByKind = _ByLabel(self._errors)
        self._cutOffs = Counter(
            "live_slow_consumer_cutoffs", "Connections cut off because their page stopped "
            "reading (too many bytes waiting for it).", registry=r)
        self._budgetCloses = Counter(
            "live_budget_closes", "Connections closed for going over a budget, by kind: "
            "FrameFlood (frames of every kind far faster than the rate limits: 1008), "
            "PartialBudget (the most held in unfinished messages when all together "
            "were over --max-partial-bytes: 1009), MessageTooBig (a message declared over the hard "
            "size limit: 1009).", ["kind"], registry=r)
        self._budgetClosesByKind = _ByLabel(self._budgetCloses)
        self._fanOut = Histogram(
            "live_stream_fanout_seconds", "Seconds one Stream.emit took: encoding one call and "
            "writing it to the connection of every page subscribed (not the time until pages "
            "read it).", buckets=FANOUT_BUCKETS, registry=r)

    def addGauge(self, name: str, documentation: str, function: Callable[[], float]) -> Gauge:
        """
        Add a gauge whose value is C{function()}, called (in the reactor
        thread) each time the metrics are read.
        """
        gauge = Gauge(name, documentation, registry=self.registry)
        gauge.set_function(function)
        return gauge

    def render(self) -> bytes:
        """
        Every metric of the registry in the Prometheus text format.
        """
        return generate_latest(self.registry)

    # What the runtime counts

    def callReceived(self, method: str | None) -> None:
        """
        A page called C{method}, which is exposed; L{None} if it is not.
        """
        self._callsByMethod.inc(method or OTHER_METHOD)

    def sent(self) -> None:
        self._direct.inc()

    def emitted(self, recipients: int, seconds: float) -> None:
        """
        A stream sent one call to C{recipients} pages in C{seconds}.
        """
        self._stream.inc(recipients)
        self._fanOut.observe(seconds)

    def resumed(self, outcome: str) -> None:
        self._resumes[outcome].inc()

    def refused(self, kind: str) -> None:
        """
        A frame or call was refused with an error of class C{kind}.
        """
        self._errorsByKind.inc(kind)

    def cutOff(self) -> None:
        self._cutOffs.inc()

    def closedForBudget(self, kind: str) -> None:
        """
        A connection was closed for going over the budget C{kind}.
        """
        self._budgetClosesByKind.inc(kind)


class _ByLabel:
    """
    The children of a counter with one label, each bound the first time
    its value is counted (or in advance, so that it reads 0 until then),
    never again: C{labels()} checks its values and takes a lock, too much
    for every call a page makes.
    """

    __slots__ = ("counter", "_children")

    def __init__(self, counter: Counter, *bound: str) -> None:
        self.counter = counter
        self._children: dict[str, Any] = {value: counter.labels(value) for value in bound}

    def inc(self, value: str) -> None:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self.counter.labels(value)
        child.inc()


class _Unmeasured(LiveMetrics):
    """
    Counts nothing: for sessions and streams not (yet) part of a site.
    """

    def __init__(self) -> None:
        pass

    def callReceived(self, method: str | None) -> None:
        pass

    def sent(self) -> None:
        pass

    def emitted(self, recipients: int, seconds: float) -> None:
        pass

    def resumed(self, outcome: str) -> None:
        pass

    def refused(self, kind: str) -> None:
        pass

    def cutOff(self) -> None:
        pass

    def closedForBudget(self, kind: str) -> None:
        pass


#: The metrics of sessions and streams made outside any site.
UNMEASURED: LiveMetrics = _Unmeasured()


class MetricsResource(Resource):
    """
    C{GET /metrics}: the registry in the Prometheus text format, rendered in
    the reactor thread (C{prometheus_client.twisted.MetricsResource} renders
    in a thread pool, where gauge functions would read the runtime's state
    while the reactor changes it).
    """

    isLeaf = True

    def __init__(self, metrics: LiveMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return self.metrics.render()
