"""
The wire protocol: JSON text frames, one object each, told apart by C{type}.

This module turns bytes into checked, typed frames (L{decode}: a L{Call},
an L{Ack}... each field read and checked once, here) and frames into bytes;
it knows nothing of sockets or elements.  C{docs/protocol.md} is its specification.
"""

import json
from dataclasses import dataclass
from typing import Any, Callable

from ._errors import ProtocolError

#: Bumped on any change a deployed client would notice.
PROTOCOL_VERSION = 1

#: Frames larger than this get a C{FrameTooLarge} error reply and are dropped;
#: the connection stays up.
MAX_FRAME_BYTES = 64 * 1024

#: Frames larger than this are refused by the WebSocket layer itself, which
#: closes the connection with code 1009 ("message too big").
HARD_MAX_FRAME_BYTES = 1024 * 1024

HELLO = "hello"
WELCOME = "welcome"
RESUMED = "resumed"
CALL = "call"
RESULT = "result"
ERROR = "error"
EMIT = "emit"
ACK = "ack"
LEAVE = "leave"
#: Server → page, unnumbered: the store's epoch changed (see docs/protocol.md).
EPOCH = "epoch"

#: Frames that carry a C{seq} and are replayed after a reconnection.
NUMBERED = frozenset({CALL, RESULT, ERROR})

#: WebSocket close codes the runtime uses (RFC 6455, section 7.4; 4000-4999
#: are ours, see docs/protocol.md).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_SERVER_ERROR = 1011
#: The server is stopping (draining): the page reconnects, to another
#: process or this one's replacement, and resumes its session.
CLOSE_SERVICE_RESTART = 1012
CLOSE_REPLACED = 4001
CLOSE_TOO_FAR_BEHIND = 4008
#: The element cannot be shown (its template or module is broken): final,
#: the page shows why and does not reconnect.
CLOSE_ELEMENT_UNAVAILABLE = 4010

#: Close codes with which a page says it is leaving on purpose.
LEAVING_CODES = frozenset({1000, 1001})

#: Close codes with which the server ends a misbehaving page's session at
#: once: protocol errors (1002, 1007 invalid UTF-8, 1008 a frame flood,
#: 1009 too big), and failures to make its element (1011).
ENDING_CODES = frozenset({1002, 1007, 1008, 1009, 1011})


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_asciiEncoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


class FrameTooLarge(ProtocolError):
    """
    A frame exceeded L{MAX_FRAME_BYTES}.
    """


def encode(frame: dict[str, Any] | list[Any]) -> bytes:
    """
    The UTF-8 bytes of C{frame} (or of a list of arguments), compact.
    """
    text = _encoder.encode(frame)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: JSON can carry one ("\ud800", which a page may
        # send), UTF-8 cannot; escape it, and every non-ASCII character.
        return _asciiEncoder.encode(frame).encode("ascii")


def decode(payload: bytes, isBinary: bool, maxBytes: int = MAX_FRAME_BYTES) -> "Frame":
    """
    The frame held by one WebSocket message, its fields checked once, here.

    A JSON object with a C{type} string is always a frame: one whose
    fields are wrong is a L{Malformed}, refused by whoever gets it.

    @raise ProtocolError: (or L{FrameTooLarge}) it is not a JSON object with
        a C{type} string, saying what is wrong.
    """
    if isBinary:
        raise ProtocolError("binary frames are not supported; send JSON text")
    if len(payload) > maxBytes:
        raise FrameTooLarge(
            f"frame of {len(payload)} bytes exceeds the limit of "
            f"{maxBytes} bytes"
        )
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        # RecursionError: nested too deeply for the decoder (e.g. "[[[[...").
        raise ProtocolError("frame is not valid JSON") from None
    return fromObject(obj)


def fromObject(obj: Any) -> "Frame":
    """
    The typed frame a decoded JSON value stands for (what L{decode} does
    after parsing; in-process callers and tests that hold a C{dict} use it).

    @raise ProtocolError: it is not an object with a C{type} string.
    """
    if not isinstance(obj, dict):
        raise ProtocolError("frame must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError('frame has no "type" string')
    parse = _PARSERS.get(kind)
    if parse is None:
        return Unexpected(kind)
    try:
        return parse(obj)
    except ProtocolError as e:
        seq = obj.get("seq")
        good = seq if type(seq) is int and seq >= 0 else None
        return Malformed(kind, good, _callId(obj) if kind in NUMBERED else None, e,
                         seq is not None and good is None)


# What a page sends, decoded: one class per kind of frame.  Their
# fields are checked once, by L{decode}; the protocol, the handshake and the
# session read them as attributes and check nothing again.  They are read,
# never changed; not frozen, because a frozen dataclass takes three times as
# long to make (600 ns against 180 ns for a call), and every frame read
# makes one.


@dataclass(slots=True)
class Resume:
    """
    What a C{hello} asks to resume: the session, the last numbered frame
    the page saw, and the offset it reached in each stream.
    """

    session: str
    seq: int
    streams: dict[str, int]


@dataclass(slots=True)
class Hello:
    """
    The page's first frame.  C{version} is as sent (the handshake refuses
    one it does not speak, before anything else: so C{resume} is read only
    when the version is right, and is L{None} otherwise).
    """

    version: object
    page: str
    render: bool
    resume: Resume | None


@dataclass(slots=True)
class Call:
    """
    A call of one of the element's exposed methods; C{seq} numbers it for
    replay (L{None}: not numbered, always run).
    """

    id: int
    method: str
    args: list[Any]
    seq: int | None


@dataclass(slots=True)
class Result:
    """
    The page's answer to one of the server's calls.
    """

    id: int
    value: Any
    seq: int | None


@dataclass(slots=True)
class ErrorReply:
    """
    The page's failure answering one of the server's calls.
    """

    id: int
    name: str
    message: str
    seq: int | None


@dataclass(slots=True)
class Ack:
    """
    The page has every numbered frame up to C{seq}.
    """

    seq: int


@dataclass(slots=True)
class Leave:
    """
    The page is leaving on purpose.
    """


@dataclass(slots=True)
class Unexpected:
    """
    A frame of a C{type} a page may not send (unknown, or one only the
    server sends): kept, so that whoever gets it can say why it is refused
    (before C{hello}, that C{hello} must come first).
    """

    type: str


@dataclass(slots=True)
class Malformed:
    """
    A frame of a kind a page may send, whose fields are wrong (C{error}
    says how).  Kept, not raised at once, because when it is refused
    depends on who gets it: a numbered one re-sent after a reconnection is
    dropped unread like any re-sent frame (so C{seq} is kept when it is
    right), and before C{hello} any other frame is refused for coming first.

    @ivar id: the frame's C{id} if it is a usable one (of a C{call}, it is
        named in the error reply), else L{None}.
    @ivar badSeq: its C{seq} is what is wrong: refused however it comes.
    """

    type: str
    seq: int | None
    id: int | None
    error: ProtocolError
    badSeq: bool


Frame = Hello | Call | Result | ErrorReply | Ack | Leave | Unexpected | Malformed


def _seq(obj: dict[str, Any], field: str = "seq") -> int | None:
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ProtocolError(f'"{field}" must be an integer >= 0')
    return value


def _callId(obj: dict[str, Any]) -> int | None:
    value = obj.get("id")
    if type(value) is int and value >= 0:
        return value
    return None


def _requireId(obj: dict[str, Any], kind: str) -> int:
    value = _callId(obj)
    if value is None:
        raise ProtocolError(f'"{kind}" frame needs an integer "id" >= 0')
    return value


def _call(obj: dict[str, Any]) -> Call:
    seq = _seq(obj)
    ident = _requireId(obj, CALL)
    method = obj.get("method")
    if type(method) is not str:
        raise ProtocolError('"call" frame needs a "method" string')
    args = obj.get("args", [])
    if type(args) is not list:
        raise ProtocolError('"call" frame\'s "args" must be a list')
    return Call(ident, method, args, seq)


def _result(obj: dict[str, Any]) -> Result:
    seq = _seq(obj)
    return Result(_requireId(obj, RESULT), obj.get("value"), seq)


def _error(obj: dict[str, Any]) -> ErrorReply:
    seq = _seq(obj)
    error = obj.get("error")
    if not isinstance(error, dict):
        raise ProtocolError('"error" frame needs an "error" object')
    ident = _requireId(obj, ERROR)
    name = error.get("name")
    message = error.get("message")
    return ErrorReply(ident, name if isinstance(name, str) else "Error",
                      message if isinstance(message, str) else "", seq)


def _ack(obj: dict[str, Any]) -> Ack:
    seq = _seq(obj)
    if seq is None:
        raise ProtocolError('"ack" frame needs a "seq"')
    return Ack(seq)


def _leave(obj: dict[str, Any]) -> Leave:
    return _LEAVE


def _hello(obj: dict[str, Any]) -> Hello:
    version = obj.get("version")
    page = obj.get("page", "/")
    resume = _resume(obj.get("resume")) if type(version) is int and version == PROTOCOL_VERSION else None
    return Hello(version, page if isinstance(page, str) else "/",
                 obj.get("render", True) is not False, resume)


def _resume(resume: Any) -> Resume | None:
    if resume is None:
        return None
    if not isinstance(resume, dict) or not isinstance(resume.get("session"), str):
        raise ProtocolError('"resume" must be an object with a "session" string')
    seq = _seq(resume) or 0
    streams = resume.get("streams", {})
    if not isinstance(streams, dict) or not all(
        type(v) is int and v >= 0 for v in streams.values()
    ):
        raise ProtocolError('"resume.streams" must map stream names to offsets >= 0')
    return Resume(resume["session"], seq, streams)


_LEAVE = Leave()

#: How each kind of frame a page may send is read.
_PARSERS: dict[str, Callable[[dict[str, Any]], Frame]] = {
    CALL: _call, ACK: _ack, RESULT: _result, ERROR: _error, HELLO: _hello, LEAVE: _leave,
}


def emitFrame(stream: str, offset: int, method: str, args: tuple | list) -> dict[str, Any]:
    return {"type": EMIT, "stream": stream, "offset": offset, "method": method, "args": list(args)}


def passingFrame(stream: str, method: str, args: tuple | list) -> dict[str, Any]:
    """
    An emit frame of a stream that is not replayed: it has no offset, and
    the page runs it whenever it comes.
    """
    return {"type": EMIT, "stream": stream, "method": method, "args": list(args)}


def notifyFrame(method: str, args: tuple | list) -> dict[str, Any]:
    """
    An emit frame for one page: no stream, numbered (C{seq}) by its
    session when sent, so replayed like a call, but never answered.
    """
    return {"type": EMIT, "method": method, "args": list(args)}


def encodeArgs(args: list[Any]) -> bytes:
    """
    A call's arguments encoded once, for L{notifyPayload} (and
    C{LiveElement.notifyRemoteEncoded}) to splice into many pages' frames.
    """
    return encode(list(args))


def notifyPayload(method: str, argsJSON: bytes, seq: int) -> bytes:
    """
    The bytes of L{notifyFrame}C{(method, args)} numbered C{seq}, its
    C{args} given encoded already (L{encode} of the list): what one
    encoding of a large value, such as a room's presence list, spliced into
    each page's own numbered frame looks like, byte for byte as L{encode}
    would have made it.
    """
    return b"".join((b'{"type":"emit","method":', encode([method])[1:-1], b',"args":', argsJSON,
                     b',"seq":', str(seq).encode("ascii"), b"}"))


def callFrame(ident: int, method: str, args: tuple | list) -> dict[str, Any]:
    return {"type": CALL, "id": ident, "method": method, "args": list(args)}


def resultFrame(ident: int, value: Any) -> dict[str, Any]:
    return {"type": RESULT, "id": ident, "value": value}


def errorFrame(ident: int | None, name: str, message: str) -> dict[str, Any]:
    """
    An error reply.  C{ident} is the call it answers, or L{None} for a frame
    that could not be tied to a call.
    """
    return {"type": ERROR, "id": ident, "error": {"name": name, "message": message}}


def errorFrameFor(ident: int | None, error: BaseException) -> dict[str, Any]:
    """
    The error reply that tells the peer what C{error} was: its class name and
    message, never a traceback.
    """
    return errorFrame(ident, type(error).__name__, str(error))
