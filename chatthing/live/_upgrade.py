"""
The WebSocket upgrade without twisted.web's request.

A page's connection opens with one small request, C{GET /live} with
C{Upgrade: websocket}, which arrives whole in one read.  Through twisted.web
it cost about as much as Autobahn's own handshake: the channel parsed it a
line at a time, made a L{twisted.web.server.Request}, set the security
headers (never sent: Autobahn writes its own answer), asked the socket its
address, walked the resource tree, and L{LiveSocketResource} joined the
headers back into bytes for Autobahn to parse again (docs/performance.md,
"CPU per connect: where it went").

L{LiveHTTPChannel} takes a shorter way for exactly that request, and only
when nothing about it could be refused: the first read of a connection
holds the whole head and nothing after it; the request line is C{GET
/live[?...] HTTP/1.1}, its target printable ASCII; every header line is a
token, a colon and a value with no NUL (what twisted.web accepts); the head is within the channel's
C{totalHeadersSize} and C{maxHeaders}; there is no body (no
C{Content-Length}, no C{Transfer-Encoding}); C{Upgrade} is C{websocket};
the C{Host} is one the site's L{HostCheck} allows.  The bytes read go to
the WebSocket connection as they are, and Autobahn parses them once (its
origin check, C{maxConnections} and handshake errors are the same either
way).  Any other request, including every one that would be refused (400,
404, 405, 413, 421, 426) or that trickles in, takes the slow path through
twisted.web unchanged: same answers, same counts, same log lines.  Either
way the request's deadline and its place among the unfinished requests end
as it arrives (L{BoundedHTTPChannel}).
"""

import re
from typing import Any

from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import HTTPChannel

from ._http import BoundedHTTPChannel

#: A header line twisted.web would take: a token, a colon, a value with no
#: NUL, CR or LF (a bare LF would end a line there).
_HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00\r\n]*")

#: A request target twisted.web would take: printable ASCII, no space.
_TARGET = re.compile(rb"[\x21-\x7e]+")

#: The header names the fast path reads or leaves to the slow path.
_HOST, _UPGRADE = b"host", b"upgrade"
_BODY = (b"content-length", b"transfer-encoding")


def upgradeHeaders(data: bytes, path: bytes, maxSize: int, maxHeaders: int) -> dict[bytes, bytes] | None:
    """
    The headers (lower-case names, stripped values) of C{data} if it is
    exactly one whole WebSocket upgrade request for C{path} that
    twisted.web would accept as it is, with no body and nothing after it;
    L{None} for anything else (which the slow path answers).
    """
    end = data.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(data) or end > maxSize:
        return None
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if (len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1"
            or parts[1].split(b"?", 1)[0] != path or not _TARGET.fullmatch(parts[1])):
        return None
    if len(lines) - 1 > maxHeaders:
        return None
    headers: dict[bytes, bytes] = {}
    match = _HEADER_LINE.fullmatch
    for line in lines[1:]:
        if match(line) is None:
            return None  # an obs-fold, a bad name, a NUL: twisted.web's 400
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in headers:
            if name == _HOST:
                return None
            headers[name] += b"," + value.strip(b" \t")
        else:
            headers[name] = value.strip(b" \t")
    if headers.get(_UPGRADE, b"").lower() != b"websocket" or any(h in headers for h in _BODY):
        return None
    return headers


def releaseChannel(channel: HTTPChannel, transport: Any) -> None:
    """
    Let go of twisted.web's C{channel}, whose connection (C{transport})
    is the WebSocket's now: it is no longer the transport's producer and
    holds no request, so nothing keeps it alive for the connection's life.
    """
    if getattr(transport, "producer", None) is channel:
        transport.unregisterProducer()
    channel.requests.clear()


def handOver(transport: Any, connection: Any, data: bytes) -> None:
    """
    Make C{connection} the protocol of C{transport} (under TLS, of the TLS
    wrapper around it), open it, and give it C{data}, the request read.
    """
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = connection
    elif isinstance(transport.protocol, ProtocolWrapper):
        transport.protocol.wrappedProtocol = connection
    else:
        transport.protocol = connection
    connection.makeConnection(transport)
    connection.dataReceived(data)


class LiveHTTPChannel(BoundedHTTPChannel):
    """
    The live site's channel: a L{BoundedHTTPChannel} that hands a plain
    WebSocket upgrade request to the site's WebSocket factory at once
    (C{site.liveFactory}, for C{site.livePath}) and leaves everything else
    to twisted.web.
    """

    #: Whether the connection has read nothing yet.
    _fresh = True

    def dataReceived(self, data: bytes) -> None:
        if self._fresh:
            self._fresh = False
            if not self._refused and self._upgrade(data):
                return
        super().dataReceived(data)

    def _upgrade(self, data: bytes) -> bool:
        """
        Hand the connection to the WebSocket if C{data} is an upgrade the
        fast path may take (L{upgradeHeaders}) from an allowed host.

        @return: whether it did.
        """
        site: Any = self.site
        headers = upgradeHeaders(data, site.livePath, self.totalHeadersSize, self.maxHeaders)
        if headers is None:
            return False
        transport: Any = self.transport
        host = headers.get(_HOST)
        check = site.hostCheck
        if not check.allows(host) and not check.allows(host, getattr(transport.getHost(), "host", None)):
            return False  # the slow path answers 421, counts and logs it
        connection = site.liveFactory.buildProtocol(transport.getPeer())
        if connection is None:
            return False
        self._requestArrived()
        self.setTimeout(None)
        self.transport = None
        releaseChannel(self, transport)
        handOver(transport, connection, data)
        return True


__all__ = ["LiveHTTPChannel", "handOver", "releaseChannel", "upgradeHeaders"]
