"""
L{RawPage}: one page of the live protocol, spoken over a WebSocket written
by hand on a plain Twisted L{Protocol}, for the load generator.

Why not Autobahn, or L{chatthing.live.testing.LiveTestClient}?  A load
generator must spend much less per received frame than the server spends
per delivered frame, or the bench measures itself.  Autobahn decodes,
validates and dispatches every frame; here a frame costs a header parse and
one C{bytes.find}: a page only counts the room's C{displayUserMessage}
emits, without decoding them, except on I{probe} pages, which decode them
to read the send time the sender wrote in the text.

What it does not do, because no chatthing server asks for it: fragmented
messages, compression, resuming a session after a drop.  Client frames are
masked, as RFC 6455 requires, with a constant all-zero key: the mask bit and
key are on the wire, and XOR with zero leaves the payload as it is, so
masking costs nothing.
"""

import json
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.tcp import Client, Connection
from twisted.python.failure import Failure

from ..live import defaultReactor
from .presence import (
    PRESENCE_CHANGED,
    PRESENCE_JOINED,
    PRESENCE_LEFT,
    PRESENCE_LIST,
    Presence,
    countPresent,
)

_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA

#: The key of every handshake: the server only checks that it is 16 bytes
#: in base64 (RFC 6455's own example).
_HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

#: How a room emit's payload begins, and what marks the messages users said
#: (the room also emits C{messageTime}, presence and alerts).  Quotes inside
#: JSON strings are escaped, so the marker cannot appear in a user's text.
_EMIT_PREFIX = b'{"type":"emit"'
_USER_MESSAGE = b'"method":"displayUserMessage"'

#: The frames the server numbers (its C{ack} frames carry a C{seq} too, but
#: theirs is ours; of its emits, only those for one page are numbered).
_NUMBERED = frozenset({"call", "result", "error", "emit"})

#: Acknowledge the server's numbered frames after this many, or this many
#: seconds after the first one not acknowledged, as the browser's runtime
#: does (so the server can let go of them).
ACK_EVERY = 16
ACK_DELAY = 0.25


class CallFailed(Exception):
    """
    The server answered a call with an C{error} frame.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class PageClosed(Exception):
    """
    The connection closed before the page was welcomed or a call answered.
    """


def maskedFrame(opcode: int, payload: bytes) -> bytes:
    """
    One final client frame of C{opcode} carrying C{payload}, masked with the
    all-zero key (so the payload is sent as it is).
    """
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


def messageText(sentNanoseconds: int, sender: str, number: int) -> str:
    """
    What a sender says: its send time first (C{time.perf_counter_ns()}, read
    by probes in the same process, so on the same clock), then who and
    which, padded to the length of a short chat line.
    """
    return f"{sentNanoseconds} {sender} #{number} the quick brown fox jumps over"


def sentTime(text: str) -> int:
    """
    The send time L{messageText} wrote in C{text}.
    """
    return int(text.split(" ", 1)[0])


class RawPage(Protocol):
    """
    One page's WebSocket to a live server: handshake, C{hello}, numbered
    calls, acknowledgements, and counting of the room's user messages.

    @ivar welcomed: fires with the C{welcome} frame, or fails with
        L{PageClosed} (or the server's error) if the page is not welcomed.
    @ivar deliveries: C{displayUserMessage} emits received so far (the
        load generator resets it between scenarios).
    @ivar frames: text frames of any kind received so far: while it grows,
        the server is still sending something (the announcements of a
        storm of logins, say).
    @ivar latencies: on a probe page, a list to which each
        C{displayUserMessage}'s send-to-receive time (nanoseconds) is
        appended, while it is not L{None}.
    @ivar received: bytes of text frames (their payloads) received so far.
    @ivar source: the address the page's connection came from.
    @ivar presence: the crowd's L{Presence} count, if this page follows
        the room's presence frames; C{present} is then how many names its
        presence view holds.
    @ivar closed: fires (with L{None}) when the connection is lost, and
        C{closeReason} says why.
    @ivar arrived: while the bytes being read are handed over, when the
        kernel says they arrived (C{time.perf_counter_ns()}'s clock), if
        whatever reads the socket asked it (L{chatthing.bench.bulkread});
        L{None} otherwise, and a probe then times a frame as it reads it.
    @ivar whenLost: called when the connection is lost, by whatever reads
        the socket in the reactor's stead (L{chatthing.bench.bulkread}).
    @ivar transport: the TCP connection, once connected: a page is only
        ever connected over TCP (L{chatthing.bench.crowd}), and the bulk
        reader takes its very socket.
    """

    transport: Client

    def __init__(self, host: str, port: int, path: str = "/live", page: str = "/",
                 probe: bool = False, reactor: Any = None) -> None:
        self.host = host
        self.reactor = defaultReactor(reactor)
        self.port = port
        self.path = path
        self.page = page
        self.probe = probe
        self.deliveries = 0
        self.frames = 0
        self.received = 0
        self.source = ""
        self.presence: Presence | None = None
        self.present = 0
        self.latencies: list[int] | None = None
        self.welcomed: Deferred = Deferred()
        self.closed: Deferred = Deferred()
        self.closeReason: Failure | None = None
        self.whenLost: Callable[[], None] | None = None
        self.arrived: int | None = None
        self.isOpen = False
        self._upgraded = False
        self._buffer = bytearray()
        self._sentSeq = 0
        self._receivedSeq = 0
        self._unacknowledged = 0
        self._ackTimer: Any = None
        self._nextId = 0
        self._waiting: dict[int, Deferred] = {}

    # Opening

    def connectionMade(self) -> None:
        self.isOpen = True
        self.source = self.transport.getHost().host
        # A call must leave at once, not wait for the ack of the last frame
        # (Nagle's algorithm): it would add tens of milliseconds to the
        # latency measured.
        self.transport.setTcpNoDelay(True)
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {_HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.transport.write(request.encode("ascii"))

    def _upgrade(self) -> bool:
        """
        Read the handshake's answer from the buffer, once it is all there:
        whether the WebSocket is open.
        """
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        status = bytes(self._buffer[:self._buffer.find(b"\r\n")])
        del self._buffer[:end + 4]
        if b" 101 " not in status + b" ":
            self._fail(PageClosed(f"handshake refused: {status.decode('latin-1')}"))
            self.transport.loseConnection()
            return False
        self._upgraded = True
        self.sendFrame({"type": "hello", "version": 1, "page": self.page, "render": False})
        return True

    # Sending

    def sendFrame(self, frame: dict[str, Any]) -> None:
        if self.isOpen:
            payload = json.dumps(frame, separators=(",", ":")).encode("utf-8")
            self._write(maskedFrame(_TEXT, payload))

    def _write(self, data: bytes) -> None:
        """
        Write C{data} straight to the socket if the transport holds nothing
        before it, through the transport otherwise (and what the socket
        does not take).  A timed call must leave when its send time is
        written in it: through the transport it left on the reactor's next
        turn, after whatever else that turn read (a sweep of a thousand
        pages), and the server's latency grew by the load generator's.
        Only Twisted's own TCP connection is written to so (a test's
        transport is not).
        """
        transport = self.transport
        if (isinstance(transport, Connection) and transport.connected and not transport.disconnecting
                and not transport.dataBuffer and not transport._tempDataLen):
            try:
                data = data[transport.socket.send(data):]
            except BlockingIOError:
                pass
            except OSError:
                pass  # broken: the transport finds out
        if data:
            transport.write(data)

    def call(self, method: str, *args: Any) -> Deferred:
        """
        Call the element's exposed C{method}, numbered so the server runs it
        once; fires with the result's value, or fails with L{CallFailed}.
        """
        self._sentSeq += 1
        ident = self._nextId
        self._nextId += 1
        d: Deferred = Deferred()
        self._waiting[ident] = d
        self.sendFrame({"type": "call", "seq": self._sentSeq, "id": ident,
                        "method": method, "args": list(args)})
        return d

    def close(self) -> None:
        """
        Leave on purpose (close code 1000), so the server ends the session
        at once instead of keeping it for the grace period.
        """
        if self.isOpen:
            self.transport.write(maskedFrame(_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.loseConnection()

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        if self._buffer or not self._upgraded:
            # The rare path: part of a frame (or of the handshake) came
            # before; join them.
            self._buffer += data
            if not self._upgraded and not self._upgrade():
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        used = self._parse(data)
        if used < len(data):
            self._buffer += data[used:]

    def _parse(self, data: bytes) -> int:
        """
        Act on each whole frame in C{data}: how many bytes they took.
        """
        position, size = 0, len(data)
        while size - position >= 2:
            length = data[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = (data[position + 2] << 8) | data[position + 3]
                start = position + 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(data[position + 2:position + 10], "big")
                start = position + 10
            end = start + length
            if end > size:
                break
            first = data[position]
            position = end
            if first == 0x81:  # a final text frame
                self.frames += 1
                self.received += length
                if data.startswith(_EMIT_PREFIX, start, end):
                    if data.find(_USER_MESSAGE, start, end) >= 0:
                        self.deliveries += 1
                        if self.latencies is not None:
                            self._probe(data[start:end])
                    elif self.presence is not None:
                        self._followPresence(data, start, end)
                else:
                    self._frameReceived(json.loads(data[start:end]))
            else:
                self._controlReceived(first, data[start:end])
        return position

    def _probe(self, payload: bytes) -> None:
        received = self.arrived if self.arrived is not None else time.perf_counter_ns()
        try:
            sent = sentTime(json.loads(payload)["args"][1])
        except (ValueError, LookupError, TypeError):
            return  # said by someone else than the load generator
        if self.latencies is not None:
            self.latencies.append(received - sent)

    def _followPresence(self, data: bytes, start: int, end: int) -> None:
        """
        Count the names of this page's presence view from the presence
        frame C{data[start:end]}, if it is one.
        """
        before = self.present
        if data.find(PRESENCE_JOINED, start, end) >= 0:
            self.present += 1
        elif data.find(PRESENCE_LEFT, start, end) >= 0:
            self.present -= 1
        elif data.find(PRESENCE_LIST, start, end) >= 0:
            self.present = countPresent(data, data.find(b'"args":[', start, end) + 7, end)
        elif data.find(PRESENCE_CHANGED, start, end) >= 0:
            args = json.loads(data[start:end])["args"]
            # Past the room's window size, the count is told with the changes.
            self.present = args[2] if len(args) == 3 else self.present + len(args[0]) - len(args[1])
        else:
            return
        if self.presence is not None:
            self.presence.changed(before, self.present)

    def _controlReceived(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == _PING:
            self.transport.write(maskedFrame(_PONG, payload))
        elif opcode == _CLOSE:
            self.transport.write(maskedFrame(_CLOSE, payload[:2]))
            self.transport.loseConnection()
        elif opcode != _PONG:
            self._fail(PageClosed(f"unsupported frame (first byte {first:#x}): "
                                  "the load generator reads only whole text frames"))
            self.transport.loseConnection()

    def _frameReceived(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        seq = frame.get("seq") if kind in _NUMBERED else None
        if seq is not None:
            self._receivedSeq = seq
            self._unacknowledged += 1
            if self._unacknowledged >= ACK_EVERY:
                self.acknowledge()
            elif self._ackTimer is None:
                self._ackTimer = self.reactor.callLater(ACK_DELAY, self.acknowledge)
        ident = frame.get("id")
        if kind == "result":
            d = self._waiting.pop(ident, None) if isinstance(ident, int) else None
            if d is not None:
                d.callback(frame.get("value"))
        elif kind == "error":
            error = frame.get("error") or {}
            failure = CallFailed(error.get("name", "Error"), error.get("message", ""))
            d = self._waiting.pop(ident, None) if isinstance(ident, int) else None
            if d is not None:
                d.errback(failure)
            elif not self.welcomed.called:
                self._fail(failure)
        elif kind == "welcome":
            if not self.welcomed.called:
                self.welcomed.callback(frame)
        elif kind == "call":
            # The chat calls no widget method of its pages but through
            # streams; answer any call so nothing waits on us.
            self._sentSeq += 1
            self.sendFrame({"type": "result", "seq": self._sentSeq, "id": frame.get("id"),
                            "value": None})

    def acknowledge(self) -> None:
        """
        Tell the server every numbered frame so far has arrived.
        """
        self._cancelAck()
        if self._unacknowledged and self.isOpen:
            self._unacknowledged = 0
            self.sendFrame({"type": "ack", "seq": self._receivedSeq})

    def _cancelAck(self) -> None:
        if self._ackTimer is not None and self._ackTimer.active():
            self._ackTimer.cancel()
        self._ackTimer = None

    # Closing

    def _fail(self, error: Exception) -> None:
        if not self.welcomed.called:
            self.welcomed.errback(Failure(error))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.isOpen = False
        self._cancelAck()
        if self.whenLost is not None:
            self.whenLost()
        self._fail(PageClosed(f"connection closed before the welcome: {reason.getErrorMessage()}"))
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(PageClosed(f"connection closed before the answer: {reason.getErrorMessage()}"))
        self.closeReason = reason
        self.closed.callback(None)
