"""
What one HTTP client can make the server hold before its request is
complete, bounded.

twisted.web's own guard is an idle timeout that every byte restarts, so a
client that trickles its headers a byte at a time holds its connection (and
a file descriptor) for ever; a thousand of them use up the process's
descriptors and no newcomer is accepted.  L{BoundedHTTPChannel} gives each
request an overall deadline from the moment the server starts waiting for
it (not an idle one), and the site keeps its connections that have not
finished a request in L{UnfinishedRequests}, which sheds the oldest when
too many wait at once: a newcomer's request, which arrives whole in a
moment, is served while the trickling ones are closed.  Request bodies are
held to a small cap (nothing the live site serves takes one): a larger one
is refused with 413 before it is read.
"""

from collections import OrderedDict
from typing import Any, Callable, Protocol, Sequence, cast

from prometheus_client import CollectorRegistry, Counter
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from ._logsafe import LogThrottle, cut

#: Sent with every response: no inline script or style, nothing from other
#: origins, no framing (clickjacking), no MIME sniffing.
SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; connect-src 'self'; object-src 'none'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
}

def withConnectSources(urls: Sequence[str]) -> dict[bytes, bytes]:
    """
    L{SECURITY_HEADERS}, with the page also allowed to open WebSockets to
    C{urls} (the cluster's public URLs, which it fails over to); as they
    are if there are none.
    """
    headers = dict(SECURITY_HEADERS)
    sources = [url.encode("ascii", "ignore") for url in urls
               if url.isascii() and not any(c in url for c in " ;,'\"")]
    if sources:
        policy = headers[b"Content-Security-Policy"]
        headers[b"Content-Security-Policy"] = policy.replace(
            b"connect-src 'self'", b" ".join([b"connect-src 'self'", *sources]))
    return headers


#: Why HTTP requests are refused, as the C{reason} label of
#: C{live_http_refused}.
HEADER_TIMEOUT = "header_timeout"
SHED = "shed"
BODY_TOO_LARGE = "body_too_large"
HOST_NOT_ALLOWED = "host_not_allowed"


class HTTPRefusals:
    """
    Counts and logs the HTTP requests a site refuses: one counter,
    C{live_http_refused}, by reason, and at most a few log lines of each
    reason every ten seconds (a flood is a count, not a line a request).
    """

    log = Logger()

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float],
                 metric: str = "live_http_refused", what: str = "a page") -> None:
        counter = Counter(
            metric, f"HTTP requests refused before they reached {what}, by reason: "
            f"{HEADER_TIMEOUT} (headers not complete within --request-header-timeout), {SHED} "
            "(the oldest unfinished request, closed for a newcomer past "
            f"--max-unfinished-requests), {BODY_TOO_LARGE} (a body over "
            f"--max-request-body-bytes: 413), {HOST_NOT_ALLOWED} (a Host not in "
            "--allowed-host: 421).", ["reason"], registry=registry)
        self._counts = {reason: counter.labels(reason)
                        for reason in (HEADER_TIMEOUT, SHED, BODY_TOO_LARGE, HOST_NOT_ALLOWED)}
        self.throttle = LogThrottle(clock)

    def refused(self, reason: str, format: str, **fields: Any) -> None:
        self._counts[reason].inc()
        self.throttle.warn(self.log, reason, format, **fields)


class UnfinishedRequests:
    """
    The connections waiting for a request to be complete, oldest first; when
    more than C{limit} wait, the oldest are shed (C{shed(channel)}).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: "OrderedDict[BoundedHTTPChannel, None]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, channel: "BoundedHTTPChannel") -> None:
        self._waiting[channel] = None
        while len(self._waiting) > self.limit:
            oldest, _ = self._waiting.popitem(last=False)
            oldest.shed()

    def discard(self, channel: "BoundedHTTPChannel") -> None:
        self._waiting.pop(channel, None)


class BoundedSite(Protocol):
    """
    What a L{BoundedHTTPChannel} reads of its site: a L{Site} that
    L{limitRequests} gave these bounds (Twisted's L{Site} declares none of
    them).
    """

    reactor: Any
    requestHeaderTimeout: float
    maxRequestBodyBytes: int
    unfinished: UnfinishedRequests
    refusals: "HTTPRefusals"


def _statusLine(code: int, phrase: bytes, body: bytes) -> bytes:
    head = [b"HTTP/1.1 %d %s" % (code, phrase), b"Content-Type: text/plain; charset=utf-8",
            b"Content-Length: %d" % len(body), b"Connection: close"]
    head += [name + b": " + value for name, value in SECURITY_HEADERS.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class BoundedHTTPChannel(HTTPChannel):
    """
    An HTTP/1.1 channel whose site (C{self.site}, a L{Site} with
    C{unfinished}, C{refusals}, C{requestHeaderTimeout} and
    C{maxRequestBodyBytes}) bounds it: each request must arrive whole,
    headers and body, within C{requestHeaderTimeout} seconds of the server
    starting to wait for it; the channel waits among the site's
    L{UnfinishedRequests}, which may shed it; and a body over
    C{maxRequestBodyBytes} gets 413 and the connection closed unread.

    Refusals are written straight to the transport (no resource has the
    request yet) with the security headers and C{Connection: close}; the
    connection is aborted if it has not closed a few seconds later (a peer
    that does not read).
    """

    #: Seconds a refused connection has to take its answer before it is cut.
    abortTimeout = 5

    #: The site, which L{Site.buildProtocol} sets (with the bounds above).
    site: BoundedSite

    _deadline: Any = None
    _waitingSince: float | None = None
    _received = 0
    _refused = False
    _bodyBytes = 0
    _served = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        self._waitForRequest()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._waitingSince is not None:
            self._received += len(data)
        super().dataReceived(data)

    def _waitForRequest(self) -> None:
        """
        Start the clock for the next request, and wait among the site's
        unfinished requests (which may shed the oldest: maybe another).
        """
        self._received = 0
        self._bodyBytes = 0
        self._waitingSince = self.site.reactor.seconds()
        if self._deadline is None or not self._deadline.active():
            self._deadline = self.callLater(self.site.requestHeaderTimeout, self._tooSlow)
        self.site.unfinished.add(self)

    def _requestArrived(self) -> None:
        self._waitingSince = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self.site.unfinished.discard(self)

    def _tooSlow(self) -> None:
        self._deadline = None
        timeout = self.site.requestHeaderTimeout
        self._closeWaiting(HEADER_TIMEOUT, "HTTP request from {peer} not complete after {timeout} s "
                           "({received} bytes): closed (--request-header-timeout)", timeout=timeout)

    def shed(self) -> None:
        """
        Close this connection to make room for a newer one: it has waited
        longest for its request.
        """
        self._closeWaiting(SHED, "HTTP request from {peer} shed after {age:.1f} s ({received} bytes): "
                           "{limit} unfinished requests at once (--max-unfinished-requests)",
                           limit=self.site.unfinished.limit)

    def _closeWaiting(self, reason: str, format: str, **fields: Any) -> None:
        """
        Give up on the request this connection owes.  A kept-alive
        connection idle since its last answer is closed quietly (as an idle
        timeout would); any other is counted and logged, and one that has
        sent part of a request gets 408 first.
        """
        received, since = self._received, self._waitingSince
        self._requestArrived()
        if self.transport is None or self._refused:
            return
        if not received and self._served:
            self._refused = True
            self.transport.loseConnection()
            return
        age = self.site.reactor.seconds() - (since or 0)
        self.site.refusals.refused(reason, format, peer=self._peer(), received=received, age=age, **fields)
        if received:
            self.refuse(408, b"Request Timeout", b"The request did not arrive in time.\n")
        else:
            self._refused = True
            self.transport.loseConnection()

    def _peer(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    def refuse(self, code: int, phrase: bytes, body: bytes) -> None:
        """
        Answer C{code} with C{body}, read nothing more, and close.
        """
        self._refused = True
        self._requestArrived()
        self.setTimeout(None)
        if self.transport is None:
            return
        self.transport.write(_statusLine(code, phrase, body))
        self.transport.loseConnection()
        if self._abortingCall is None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)

    def allHeadersReceived(self) -> None:
        cap = self.site.maxRequestBodyBytes
        if self.length is not None and self.length > cap:
            self._bodyTooLarge(f"Content-Length {self.length}")
            return
        super().allHeadersReceived()
        decoder = self._transferDecoder
        if self.length is None and decoder is not None:
            forward = decoder.dataCallback

            def counted(data: bytes) -> None:
                if self._refused:
                    return
                self._bodyBytes += len(data)
                if self._bodyBytes > cap:
                    self._bodyTooLarge(f"over {cap} bytes of chunked body")
                    return
                forward(data)

            decoder.dataCallback = counted

    def _bodyTooLarge(self, what: str) -> None:
        cap = self.site.maxRequestBodyBytes
        self.site.refusals.refused(
            BODY_TOO_LARGE, "HTTP request body refused from {peer}: {what} on {path} is over {cap} bytes "
            "(--max-request-body-bytes)", peer=self._peer(), what=what, cap=cap,
            path=cut(getattr(self, "_path", b"").decode("latin-1"), 100))
        self.refuse(413, b"Content Too Large", b"A request body is limited to %d bytes here.\n" % cap)

    def lineReceived(self, line: bytes) -> None:
        if not self._refused:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._requestArrived()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # Waiting for the next request starts now, before any that was
        # pipelined behind this one is read.
        self._served += 1
        if self.persistent and self.transport is not None and not self._refused:
            self._waitForRequest()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._requestArrived()
        super().connectionLost(reason)


def limitRequests(site: Site, refusals: HTTPRefusals, headerTimeout: float, maxUnfinished: int,
                  maxBodyBytes: int) -> Site:
    """
    Make C{site} serve through L{BoundedHTTPChannel}s with these bounds
    (for sites other than the live one: the operator's and the admin's,
    which listen on ports of their own); C{site}.
    """
    # Twisted annotates Site.protocol as its default channel factory (a
    # method); buildProtocol calls whatever zero-argument callable is there,
    # a channel class as Twisted's own examples set it.
    site.protocol = BoundedHTTPChannel  # type: ignore[method-assign, assignment]
    bounded = cast(BoundedSite, site)  # it becomes one here
    bounded.requestHeaderTimeout = headerTimeout
    bounded.maxRequestBodyBytes = maxBodyBytes
    bounded.unfinished = UnfinishedRequests(maxUnfinished)
    bounded.refusals = refusals
    return site
