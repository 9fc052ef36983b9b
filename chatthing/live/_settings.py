"""
L{LiveSettings}: the runtime's limits and timings, in one place, with the
defaults that C{docs/protocol.md} and README document.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class LiveSettings:
    """
    @ivar gracePeriod: seconds a page that dropped abnormally may take to come
        back to the same element before its session ends.
    @ivar maxReplayFrames: frames sent to one page and not yet acknowledged
        that the server keeps for replay; past that the session ends.
    @ivar maxFrameBytes: the largest frame a page may send; a larger one gets
        a C{FrameTooLarge} error (and one over four times this, or 1 MiB if
        that is more, closes the connection with 1009).
    @ivar maxOutgoingBytes: bytes the server will buffer for a page that does
        not read; past that its connection is cut (it may resume).
    @ivar frameRate: frames a second a page may keep sending...
    @ivar frameBurst: ...after a burst of this many.
    @ivar maxPendingCalls: calls from one page that may run at once.
    @ivar maxConnections: WebSocket connections the server accepts at once.
    @ivar pingInterval: seconds between heartbeat pings to a quiet page.
    @ivar pingTimeout: seconds a page has to answer a ping before it is taken
        for dead and dropped.
    @ivar allowedOrigins: origins (C{https://chat.example.com}) allowed to
        open the WebSocket besides the page's own.
    @ivar noDelay: whether frames go out at once (C{TCP_NODELAY}), rather
        than small ones being held by Nagle's algorithm until the page
        acknowledges earlier bytes.
    @ivar ackRate: C{ack} frames a second a page may keep sending (a
        browser sends at most about 4)...
    @ivar ackBurst: ...after a burst of this many; past that they get a
        C{RateLimited} error.  A page sending frames of every kind together
        faster than ten times its frame and ack rates is closed with 1008.
    @ivar maxPartialBytes: bytes all connections together may hold in
        messages begun and not finished; past that the connection holding
        the most is closed with 1009.
    @ivar requestHeaderTimeout: seconds an HTTP request has to arrive whole
        (headers, and body if any), counted from the connection (or the end
        of the previous request on it), not from its last byte; past that
        it gets 408 and is closed.
    @ivar maxUnfinishedRequests: HTTP connections that may wait for their
        request at once; past that the one that has waited longest is
        closed (408), so a newcomer is served while others trickle bytes.
    @ivar maxRequestBodyBytes: the largest request body the site reads; a
        larger one is answered 413 and its connection closed, unread.
    @ivar allowedHosts: host names (C{chat.example.com}, C{*.example.com},
        or C{*} for any) the site answers to besides C{localhost} and the
        address a connection arrived at; others get 421 (DNS rebinding).
    @ivar publicUrls: the public WebSocket URLs of this cluster's processes,
        told to each page in its C{welcome} so that a client whose server
        keeps failing tries the next one.
    """

    gracePeriod: float = 30.0
    maxReplayFrames: int = 1000
    maxFrameBytes: int = 64 * 1024
    maxOutgoingBytes: int = 1024 * 1024
    frameRate: float = 20.0
    frameBurst: int = 40
    maxPendingCalls: int = 16
    maxConnections: int = 10000
    pingInterval: float = 15.0
    pingTimeout: float = 10.0
    allowedOrigins: tuple[str, ...] = ()
    noDelay: bool = True
    ackRate: float = 20.0
    ackBurst: int = 40
    maxPartialBytes: int = 64 * 1024 * 1024
    requestHeaderTimeout: float = 15.0
    maxUnfinishedRequests: int = 256
    maxRequestBodyBytes: int = 64 * 1024
    allowedHosts: tuple[str, ...] = ()
    publicUrls: tuple[str, ...] = ()
